// One "tab" of tests/e2e/tabs.test.mjs: a TokenClient (shareAcrossTabs from the query string)
// driven through `window.tabs`. The page polls `client.token` every 100 ms and counts the polls
// that found no token once a first token had arrived ("gaps"). It never logs a token.

import init, { TokenClient } from "/pkg/speech_token_client.js";

const params = new URLSearchParams(location.search);
const share = params.get("share") === "1";
// ?nolocks=1: a browser without the Web Locks API (the client must fetch alone, no error).
if (params.get("nolocks") === "1") {
  Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined, configurable: true });
}

await init();
const client = new TokenClient({ brokerUrl: "/api/speech-token", shareAcrossTabs: share });

let first = false;
let polls = 0;
const gaps = [];
const seen = new Set();
const errors = [];
client.on("error", (d) => errors.push(d.error.kind));
client.on("token", () => { seen.add(client.token?.slice(-12)); });

const timer = setInterval(() => {
  const t = client.token;
  if (t) { first = true; seen.add(t.slice(-12)); }
  else if (first) gaps.push({ at: Date.now(), status: client.status });
  polls++;
}, 100);

async function storage() {
  const idb = indexedDB.databases ? (await indexedDB.databases()).length : 0;
  const caches_ = self.caches ? (await caches.keys()).length : 0;
  return { local: localStorage.length, session: sessionStorage.length, cookies: document.cookie, idb, caches: caches_ };
}

window.tabs = {
  share,
  start: () => client.getToken().then(() => true),
  state: () => ({
    token: client.token !== undefined, status: client.status, polls, gaps, errors,
    distinct: seen.size, requestCount: client.requestCount, expiresAt: client.expiresAt,
  }),
  storage,
  stop: () => { clearInterval(timer); client.dispose(); },
};
document.getElementById("status").textContent = share ? "sharing" : "alone";
