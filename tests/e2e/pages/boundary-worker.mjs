// A module worker using the package with a relative brokerUrl (boundary.mjs starts it).
import init, { TokenClient } from "/pkg/speech_token_client.js";

await init();
try {
  const client = new TokenClient({ brokerUrl: "/api/speech-token" });
  const token = await client.getToken();
  postMessage({ ok: typeof token === "string" && token.length > 20, status: client.status });
  client.dispose();
} catch (error) {
  postMessage({ kind: error?.kind ?? null, message: String(error?.message ?? error) });
}
