// Wasm memory over many refresh cycles. The global fetch is replaced by an in-page fake that
// answers at once with a fresh JSON token (no network), so 10 000 refreshNow() calls take
// seconds. Driven by bench/run.mjs through `window.mem`.

import init, { TokenClient } from "/pkg/speech_token_client.js";

let issued = 0;
// A JWT-shaped token of the same length as the dev broker's (~ 300 characters), different
// on every answer so that every cycle stores, converts and zeroizes a new token.
function fakeToken(n) {
  const payload = btoa(JSON.stringify({ iss: "bench", aud: "speech", iat: 1, exp: 601, jti: n.toString(16).padStart(32, "0") }))
    .replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  return `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.${payload}.${"s".repeat(43)}`;
}
const out = await init(); // fetches the wasm with the real fetch
const afterInit = out.memory.buffer.byteLength;

globalThis.fetch = async () => {
  issued += 1;
  return new Response(JSON.stringify({ token: fakeToken(issued), expiresIn: 600, region: "local" }), {
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
};

let client;
let cycles = 0;

window.mem = {
  async setup() {
    client = new TokenClient({ brokerUrl: "/api/speech-token" });
    const token = await client.getToken();
    return { afterInit, afterFirstToken: out.memory.buffer.byteLength, tokenLength: token.length };
  },
  /** k more refresh cycles; answers the wasm memory size afterwards. */
  async cycles(k) {
    const t0 = performance.now();
    let last = "";
    for (let i = 0; i < k; i++) {
      const t = await client.refreshNow();
      if (t === last) throw new Error("refreshNow() did not hand out a new token");
      last = t;
    }
    cycles += k;
    return {
      cycles,
      bytes: out.memory.buffer.byteLength,
      ms: performance.now() - t0,
      fetches: issued,
      clientRequests: client.requestCount,
      tokenMatches: client.token === last,
    };
  },
};
window.memReady = true;
