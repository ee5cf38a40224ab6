// The tiny app every toolchain test builds (tests/e2e/toolchains.test.mjs): the README quickstart,
// `speech-token-client/bundler` entry point (initialised on import, no init()).
import { TokenClient } from "speech-token-client/bundler";

async function main() {
  const client = new TokenClient({ brokerUrl: "/api/speech-token" });
  const token = await client.getToken();
  return { token, region: client.region, status: client.status };
}

main().then(
  (result) => { window.__result = result; },
  (error) => { window.__result = { error: String(error?.stack ?? error) }; },
);
