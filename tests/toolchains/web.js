// The tiny app every toolchain test builds (tests/e2e/toolchains.test.mjs): the README quickstart,
// web entry point (`await init()` once).
import init, { TokenClient } from "speech-token-client";

async function main() {
  await init();
  const client = new TokenClient({ brokerUrl: "/api/speech-token" });
  const token = await client.getToken();
  return { token, region: client.region, status: client.status };
}

main().then(
  (result) => { window.__result = result; },
  (error) => { window.__result = { error: String(error?.stack ?? error) }; },
);
