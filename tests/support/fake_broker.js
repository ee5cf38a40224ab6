// An in-page fake token broker for the browser tests: replaces the global `fetch`, counts
// requests, and answers from a script of responses (status, headers, body, delay), so that every
// broker behaviour in DESIGN.md can be produced precisely.
const realFetch = globalThis.fetch;
let state = null;

export function installFakeBroker() {
  state = { requests: 0, script: [], fallback: null, lastRequest: null, inits: [] };
  globalThis.fetch = (input, init) => {
    state.requests += 1;
    const request = input instanceof Request ? input : new Request(input, init);
    state.lastRequest = {
      url: request.url,
      method: request.method,
      cache: request.cache,
      redirect: request.redirect,
      credentials: request.credentials,
      headers: Object.fromEntries(request.headers.entries()),
    };
    const step = state.script.length > 0 ? state.script.shift() : state.fallback;
    if (!step) return Promise.reject(new TypeError("Failed to fetch"));
    return new Promise((resolve, reject) => {
      const signal = request.signal;
      const onAbort = () => reject(new DOMException("The operation was aborted.", "AbortError"));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      if (step.hang) return; // never answers: only the abort ends it
      setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        if (step.networkError) return reject(new TypeError("Failed to fetch"));
        if (step.redirect) return resolve(Response.redirect("https://login.example/", 302));
        resolve(new Response(step.body ?? "", { status: step.status ?? 200, headers: step.headers ?? {} }));
      }, step.delay ?? 0);
    });
  };
}

export function uninstallFakeBroker() {
  globalThis.fetch = realFetch;
  state = null;
}

/** Queue one answer. */
export function answer(step) { state.script.push(step); }
/** The answer given when the script is empty. */
export function answerAlways(step) { state.fallback = step; }
export function requests() { return state.requests; }
export function lastRequest() { return state.lastRequest; }

/** A JSON token answer. */
export function tokenAnswer(token, expiresIn, extra) {
  return {
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
    body: JSON.stringify({ token, expiresIn, region: "westeurope", ...(extra || {}) }),
  };
}

export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Everything any persistent browser store holds for this origin, as one string. */
export async function storageDump() {
  const parts = [];
  for (const store of [localStorage, sessionStorage]) {
    for (let i = 0; i < store.length; i++) parts.push(store.key(i) + "=" + store.getItem(store.key(i)));
  }
  parts.push(document.cookie);
  if (globalThis.caches) {
    for (const name of await caches.keys()) parts.push("cache:" + name);
  }
  if (indexedDB.databases) {
    for (const db of await indexedDB.databases()) parts.push("idb:" + db.name);
  }
  return parts.filter((p) => p !== "").join("\n");
}

/** Collects the client's events (only their names and the detail keys, never a token). */
export function recordEvents(client) {
  const log = [];
  for (const name of ["token", "refreshing", "error", "expired", "status", "detach"]) {
    client.on(name, (detail) => log.push({ name, detail }));
  }
  return log;
}
