// Type-checked by tests/e2e/typescript.test.mjs with a `lib` that has esnext.disposable: there the
// client is Disposable, so `using` disposes it at the end of the scope.
import init, { TokenClient } from "speech-token-client";

export async function scoped(): Promise<string> {
  await init();
  using client = new TokenClient({ brokerUrl: "/api/speech-token" });
  const disposable: Disposable = client;
  void disposable;
  return client.getToken();
}
