// Type-checked by tests/e2e/typescript.test.mjs: the `speech-token-client/bundler` entry has the
// same API as the web entry, without init() (it is initialised on import).
import { TokenClient, type TokenClientStatus, type SpeechTokenError } from "speech-token-client/bundler";

export async function useBundler(): Promise<string> {
  const client = new TokenClient({ brokerUrl: "/api/speech-token" });
  const status: TokenClientStatus = client.status;
  client.on("error", ({ error }) => void (error satisfies SpeechTokenError));
  // @ts-expect-error brokerUrl is required
  new TokenClient({});
  void status;
  return client.getToken();
}
