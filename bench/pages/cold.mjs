// Cold start: module import -> init() (wasm fetch + compile + instantiate) -> first token from
// the broker. Loaded in a fresh browser context per run by bench/run.mjs (nothing cached).
// The result lands in `window.coldResult`.

const t0 = performance.now();
try {
  const mod = await import("/pkg/speech_token_client.js");
  const t1 = performance.now();
  const out = await mod.default();
  const t2 = performance.now();
  const client = new mod.TokenClient({ brokerUrl: "/api/speech-token" });
  const token = await client.getToken();
  const t3 = performance.now();
  window.coldResult = {
    importMs: t1 - t0,
    initMs: t2 - t1,
    firstTokenMs: t3 - t2,
    totalMs: t3 - t0,
    sinceNavigationMs: t3,
    memoryBytes: out.memory.buffer.byteLength,
    tokenLength: token.length,
  };
} catch (e) {
  window.coldResult = { error: String(e && e.stack || e) };
}
