// An in-page fake token broker for the browser tests: replaces the global `fetch`, counts
// requests, and answers from a script of responses (status, headers, body, delay), so that every
// broker behaviour in docs/ARCHITECTURE.md can be produced precisely. Also: fake Speech SDK objects
// (attach targets, a SpeechConfig namespace), an event recorder, and a storage dump.
const realFetch = globalThis.fetch;
let state = null;

/**
 * A response as Chromium gives it for a redirect under `redirect: "manual"`: type
 * "opaqueredirect", status 0. The constructor cannot make one, so a subclass overrides the two
 * getters (still a real `Response`, so `instanceof Response` holds).
 */
class OpaqueRedirect extends Response {
  get type() { return "opaqueredirect"; }
  get status() { return 0; }
  get ok() { return false; }
}

// Uncaught exceptions (a wasm trap from a panic in a timer or fetch callback surfaces here),
// errors reported with reportError, and unhandled promise rejections, while the fake is installed.
const onUncaught = (event) => { state.uncaught.push(String(event.message ?? event.error)); };
const onUnhandled = (event) => { state.uncaught.push("unhandled rejection: " + String(event.reason)); };

export function installFakeBroker() {
  if (state) uninstallFakeBroker();
  state = { requests: 0, script: [], fallback: null, lastRequest: null, log: [], uncaught: [] };
  globalThis.addEventListener("error", onUncaught);
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  globalThis.fetch = (input, init) => {
    state.requests += 1;
    const request = input instanceof Request ? input : new Request(input, init);
    const entry = {
      at: Date.now(),
      url: request.url,
      method: request.method,
      cache: request.cache,
      redirect: request.redirect,
      credentials: request.credentials,
      headers: Object.fromEntries(request.headers.entries()),
      aborted: false,
    };
    state.lastRequest = entry;
    state.log.push(entry);
    const step = resolveStep(state.script.length > 0 ? state.script.shift() : state.fallback);
    if (!step) return Promise.reject(new TypeError("Failed to fetch"));
    return new Promise((resolve, reject) => {
      const signal = request.signal;
      const onAbort = () => {
        entry.aborted = true;
        reject(new DOMException("The operation was aborted.", "AbortError"));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      if (step.hang) return; // never answers: only the abort ends it
      setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        if (step.networkError) return reject(new TypeError("Failed to fetch"));
        if (step.redirect) return resolve(Response.redirect("https://login.example/", 302));
        if (step.opaqueRedirect) return resolve(new OpaqueRedirect(null));
        const body = step.stream ? endlessStream() : (step.body ?? "");
        resolve(new Response(body, { status: step.status ?? 200, headers: step.headers ?? {} }));
      }, step.delay ?? 0);
    });
  };
}

export function uninstallFakeBroker() {
  globalThis.fetch = realFetch;
  globalThis.removeEventListener("error", onUncaught);
  globalThis.removeEventListener("unhandledrejection", onUnhandled);
  state = null;
}

/** What reached the page uncaught since the install (see onUncaught). */
export function uncaughtErrors() { return state.uncaught; }

/** Queue one answer. */
export function answer(step) { state.script.push(step); }
/** The answer given when the script is empty. */
export function answerAlways(step) { state.fallback = step; }
export function requests() { return state.requests; }
export function lastRequest() { return state.lastRequest; }
/** Every request so far: {at (epoch ms), url, method, cache, redirect, credentials, headers, aborted}. */
export function requestLog() { return state.log; }

/** A JSON token answer. */
export function tokenAnswer(token, expiresIn, extra) {
  return {
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
    body: JSON.stringify({ token, expiresIn, region: "westeurope", ...(extra || {}) }),
  };
}

/** Any answer: a status, a content type (or null for none), a body and extra headers. */
export function rawAnswer(status, contentType, body, headers) {
  const all = { ...(headers || {}) };
  if (contentType) all["content-type"] = contentType;
  return { status, headers: all, body };
}

/** Special answers: "hang", "networkError", "redirect" (a 302), "opaqueRedirect". */
export function specialAnswer(kind) { return { [kind]: true }; }

export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Keeps the page busy for `ms` without yielding: no timer or event of the client runs meanwhile
 * (a long task, or what a sleeping laptop looks like to the page). */
export function busyWait(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
}

/** A header function for the `headers` option that answers asynchronously. */
export function asyncHeaders(headers) {
  const f = () => {
    f.calls += 1;
    return new Promise((resolve) => setTimeout(() => resolve(headers), 5));
  };
  f.calls = 0;
  return f;
}

/** A header function that never settles (the app's session lookup hangs). */
export function hangingHeaders() {
  return () => new Promise(() => {});
}

/** A header function that rejects (the app's session lookup failed). */
export function rejectingHeaders() {
  return () => Promise.reject(new Error("no session"));
}

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

/** An event log: `listener(name)` gives a listener that appends {name, detail} to `entries`. */
export class EventLog {
  constructor() { this.entries = []; }
  listener(name) { return (detail) => { this.entries.push({ name, detail }); }; }
  /** The details of one event, in order. */
  details(name) { return this.entries.filter((e) => e.name === name).map((e) => e.detail); }
  /** The `status` values seen, in order. */
  statuses() { return this.details("status").map((d) => d.status); }
  /** Every detail, serialized: to search for a token that must not be there. */
  json() { return JSON.stringify(this.entries.map((e) => ({ name: e.name, detail: e.detail }))); }
}

/** A listener that throws (to prove it does not stop the others). */
export function throwingListener() {
  return () => { throw new Error("listener failure (expected by the test)"); };
}

/** Catches errors reported to the page (`reportError`, uncaught exceptions) while installed. */
let pageErrors = null;
const onPageError = (event) => { pageErrors.push(String(event.message)); event.preventDefault(); };
export function catchPageErrors() {
  pageErrors = [];
  globalThis.addEventListener("error", onPageError);
}
export function stopCatchingPageErrors() {
  globalThis.removeEventListener("error", onPageError);
  const seen = pageErrors;
  pageErrors = null;
  return seen;
}

/** Every text a leaked token could hide in: message, String(), JSON, and own properties. */
export function errorTexts(error) {
  const own = {};
  for (const key of Object.getOwnPropertyNames(error)) own[key] = String(error[key]);
  return [String(error && error.message), String(error), JSON.stringify(error), JSON.stringify(own)].join("\n");
}

export function isError(value) { return value instanceof Error; }

/**
 * An attach target like a Speech SDK object: an `authorizationToken` accessor on the prototype
 * that records every value set, and throws once `close()`d (as a disposed recognizer does).
 */
export class FakeTarget {
  constructor() { this.values = []; this.closed = false; }
  set authorizationToken(value) {
    if (this.closed) throw new Error("the object is already disposed");
    this.values.push(value);
  }
  get authorizationToken() { return this.values[this.values.length - 1]; }
  close() { this.closed = true; }
}

/** The same, as a plain object with an own accessor made by Object.defineProperty. */
export function definedPropertyTarget() {
  const target = { values: [] };
  Object.defineProperty(target, "authorizationToken", {
    set(value) { target.values.push(value); },
    get() { return target.values[target.values.length - 1]; },
    enumerable: true,
  });
  return target;
}

/**
 * A fake Speech SDK namespace: `SpeechConfig.fromAuthorizationToken(token, region)` and
 * `SpeechConfig.fromEndpoint(url, credential?)` record their arguments in `sdk.calls` and return
 * a config whose `authorizationToken` records every value set (like FakeTarget).
 */
export function fakeSdk() {
  const calls = [];
  class SpeechConfig {
    constructor(token) { this.values = token === undefined ? [] : [token]; }
    set authorizationToken(value) { this.values.push(value); }
    get authorizationToken() { return this.values[this.values.length - 1]; }
    static fromAuthorizationToken(token, region) {
      calls.push({ method: "fromAuthorizationToken", args: [token, region] });
      return new SpeechConfig(token);
    }
    static fromEndpoint(url, credential) {
      calls.push({ method: "fromEndpoint", args: credential === undefined ? [url] : [url, credential] });
      return new SpeechConfig();
    }
  }
  return { SpeechConfig, calls };
}

export function isUrl(value) { return value instanceof URL; }

// ---- Lifetime tests (web_lifetime.rs) ----

/**
 * Answers every request with a new token `<prefix>-<n>` living `expiresIn` seconds (used when
 * the script is empty), so that each refresh is visible in what targets receive.
 */
export function serialTokenAnswers(prefix, expiresIn) {
  let n = 0;
  state.fallback = () => tokenAnswer(`${prefix}-${++n}`, expiresIn);
}

/** The step the fake broker uses: a function step is called for each request. */
export function resolveStep(step) { return typeof step === "function" ? step() : step; }

/** `promise`, or a rejection with "timeout after N ms" if it has not settled by then. */
export function withTimeout(promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout after ${ms} ms`)), ms)),
  ]);
}

/** `object[method](...args)`: calls through the JS wrapper exactly as an app does. */
export function callMethod(object, method, args) {
  const f = typeof method === "symbol" ? object[method] : object[method];
  return f.apply(object, args ?? []);
}

/** `Symbol.dispose` (undefined where the engine lacks explicit resource management). */
export function symbolDispose() { return Symbol.dispose; }

/**
 * Runs `{ using c = make(); body(c) }` with the real `using` syntax where the engine parses it;
 * returns "unsupported" where it does not (compiled at run time so that this module still loads
 * in engines without it).
 */
export async function runUsing(make, body) {
  let run;
  try {
    run = new Function("make", "body", "{ using c = make(); return body(c); }");
  } catch (e) {
    if (e instanceof SyntaxError) return "unsupported";
    throw e;
  }
  return run(make, body);
}

/** Whether the page can force a garbage collection (Chromium with --js-flags=--expose-gc). */
export function canForceGc() { return typeof globalThis.gc === "function"; }

/**
 * An unreachable object registered with a FinalizationRegistry: `probe.collected` turns true
 * once the collector reclaimed it, which proves a collection really ran (negative control).
 */
const probeRegistry = new FinalizationRegistry((probe) => { probe.collected = true; });
export function gcProbe() {
  const probe = { collected: false };
  probeRegistry.register({ garbage: new Array(1000).fill(1) }, probe);
  return probe;
}

/** Forces full collections and lets finalization callbacks run (they run in later tasks). */
export async function forceGc() {
  for (let i = 0; i < 4; i++) {
    if (typeof globalThis.gc === "function") globalThis.gc();
    else { let junk = []; for (let j = 0; j < 200; j++) junk.push(new Array(100000).fill(j)); junk = null; }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A random JWT-shaped secret (three base64url segments), made in JS so that the test's own
 *  wasm memory never holds it unless the module under test copied it there. */
export function secretJwt() {
  const seg = (n) => {
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  return `${seg(16)}.${seg(48)}.${seg(32)}`;
}

/** Whether the bytes of ASCII string `needle` occur anywhere in `memory` (a WebAssembly.Memory). */
export function memoryContains(memory, needle) {
  const hay = new Uint8Array(memory.buffer);
  const bytes = new TextEncoder().encode(needle);
  const first = bytes[0];
  outer: for (let i = hay.indexOf(first); i !== -1 && i <= hay.length - bytes.length; i = hay.indexOf(first, i + 1)) {
    for (let j = 1; j < bytes.length; j++) if (hay[i + j] !== bytes[j]) continue outer;
    return true;
  }
  return false;
}

/** A 200 answer whose body streams 64 KiB chunks forever, with no Content-Length. */
export function endlessBodyAnswer() {
  return {
    status: 200,
    headers: { "content-type": "application/json" },
    stream: true,
  };
}
export function endlessStream() {
  const chunk = new TextEncoder().encode(" ".repeat(65536));
  return new ReadableStream({ pull(controller) { controller.enqueue(chunk); } });
}

/** A header provider that records its calls and fails in the given ways, then succeeds:
 *  each of `failures` is "throw", "reject" or "non-object". */
export function failingHeaders(failures) {
  const f = () => {
    f.calls += 1;
    const how = failures[f.calls - 1];
    if (how === "throw") throw new Error("session lookup failed (expected by the test)");
    if (how === "reject") return Promise.reject(new Error("session lookup failed (expected by the test)"));
    if (how === "non-object") return "Bearer not-an-object";
    return { authorization: "Bearer session" };
  };
  f.calls = 0;
  return f;
}

/** A header provider that counts calls (`f.calls`). */
export function countingHeaders() {
  const f = () => { f.calls += 1; return { authorization: "Bearer session" }; };
  f.calls = 0;
  return f;
}

/** An unsigned JWT-shaped token with these `iat` and `exp` claims (epoch seconds). */
export function jwtWith(iat, exp) {
  const b64 = (s) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${b64('{"alg":"none"}')}.${b64(JSON.stringify({ iat, exp }))}.c2ln`;
}
