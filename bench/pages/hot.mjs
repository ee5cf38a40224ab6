// Hot path and single flight, driven by bench/run.mjs through `window.bench`.
//
// Every loop accumulates what it read into `acc` (and the module-level `sink`), so the JIT
// cannot drop the read as dead code. Batches are timed with performance.now() (coarsened to
// 100 µs in a page without cross-origin isolation), so a batch runs for tens of milliseconds:
// the timer error stays well under 1 %. Nothing here asserts a duration.

import init, { TokenClient } from "/pkg/speech_token_client.js";

const BROKER = "/api/speech-token";
const COOKIE = "speech-token";

await init();

let client;
let sink = 0;
const holder = { value: "" };

// A pure-JS token holder with the same contract as `client.token` (never an expired token,
// judged by both the wall clock and the monotonic clock): what a JS implementation would cost.
class JsTokenHolder {
  #token = "";
  #wallExpiry = 0;
  #monoExpiry = 0;
  set(token, lifetimeMs) {
    this.#token = token;
    this.#wallExpiry = Date.now() + lifetimeMs;
    this.#monoExpiry = performance.now() + lifetimeMs;
  }
  get token() {
    return Date.now() < this.#wallExpiry && performance.now() < this.#monoExpiry ? this.#token : undefined;
  }
}
const jsHolder = new JsTokenHolder();

// Microsoft's React sample (AzureSpeechReactSample, token_util.js getTokenOrRefresh) keeps
// "region:token" in a JS cookie and reads it back with universal-cookie on every call: parse
// document.cookie ("; "-separated), find the name, decodeURIComponent the value, split at ":".
// (The sample also console.logs the token on every call; that part is left out here.)
function cookieLookup() {
  const parts = document.cookie.split("; ");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    const eq = part.indexOf("=");
    if (part.slice(0, eq) === COOKIE) {
      const speechToken = decodeURIComponent(part.slice(eq + 1));
      const idx = speechToken.indexOf(":");
      return { authToken: speechToken.slice(idx + 1), region: speechToken.slice(0, idx) };
    }
  }
  return undefined;
}

// The sample's function as written: async, so every caller awaits it.
async function getTokenOrRefresh() {
  const found = cookieLookup();
  if (found !== undefined) return found;
  // Cold cookie: the sample asks its backend (with axios), one request per caller.
  const r = await fetch(BROKER, { cache: "no-store" });
  const data = await r.json();
  document.cookie = `${COOKIE}=${encodeURIComponent(data.region + ":" + data.token)}; max-age=540; path=/; SameSite=Strict`;
  return { authToken: data.token, region: data.region };
}

const loops = {
  // The floor: a plain JS property read.
  variable(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += holder.value.length;
    return acc;
  },
  jsGetter(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += jsHolder.token.length;
    return acc;
  },
  cookie(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += cookieLookup().authToken.length;
    return acc;
  },
  token(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += client.token.length;
    return acc;
  },
  async promiseResolve(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += (await Promise.resolve(holder.value)).length;
    return acc;
  },
  async cookieAsync(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += (await getTokenOrRefresh()).authToken.length;
    return acc;
  },
  async getToken(n) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += (await client.getToken()).length;
    return acc;
  },
};

async function timeBatch(name, n) {
  const t0 = performance.now();
  const acc = await loops[name](n);
  const ms = performance.now() - t0;
  sink += acc;
  if (acc !== n * holder.value.length) throw new Error(`${name}: read the wrong value`);
  return ms;
}

window.bench = {
  /** Gets a real token from the broker and plants the same token in the sample's cookie. */
  async setup() {
    client = new TokenClient({ brokerUrl: BROKER });
    const token = await client.getToken();
    holder.value = token;
    jsHolder.set(token, 600_000);
    document.cookie = `${COOKIE}=${encodeURIComponent("local:" + token)}; max-age=540; path=/; SameSite=Strict`;
    if (cookieLookup()?.authToken !== token) throw new Error("cookie baseline does not round-trip");
    return { tokenLength: token.length, cookieLength: document.cookie.length, status: client.status };
  },
  /** Doubles n until one batch takes at least minMs (this also warms the JIT up). */
  async calibrate(name, minMs) {
    let n = 1000;
    for (;;) {
      const ms = await timeBatch(name, n);
      if (ms >= minMs || n >= 1 << 28) return n;
      n *= ms < minMs / 8 ? 8 : 2;
    }
  },
  /** One batch of each case (order given by the caller); answers ns/op per case. */
  async round(plan) {
    const out = {};
    for (const [name, n] of plan) out[name] = (await timeBatch(name, n)) * 1e6 / n;
    return out;
  },
  sink: () => sink,
  /** n concurrent getToken() on a brand-new client (cold cache). */
  async flight(n) {
    const c = new TokenClient({ brokerUrl: BROKER });
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: n }, () => c.getToken()));
    const ms = performance.now() - t0;
    const result = { callers: n, ms, distinctTokens: new Set(all).size, clientRequests: c.requestCount };
    c.dispose();
    return result;
  },
  /** The sample's getTokenOrRefresh() from n concurrent callers with no cookie yet. */
  async flightSample(n) {
    document.cookie = `${COOKIE}=; max-age=0; path=/`;
    const t0 = performance.now();
    // allSettled: with thousands of requests in flight Chromium refuses some ("Failed to fetch").
    const all = await Promise.allSettled(Array.from({ length: n }, () => getTokenOrRefresh()));
    const ms = performance.now() - t0;
    const ok = all.filter((r) => r.status === "fulfilled");
    const reasons = [...new Set(all.filter((r) => r.status === "rejected").map((r) => String(r.reason)))];
    return { callers: n, ms, served: ok.length, failed: n - ok.length, failReasons: reasons.slice(0, 3), distinctTokens: new Set(ok.map((r) => r.value.authToken)).size };
  },
};
window.benchReady = true;
