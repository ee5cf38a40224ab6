// Type-checked by tests/e2e/typescript.test.mjs with `lib: ["ES2022", "DOM"]` (no DOM.Iterable,
// where a `Headers` is not an `Iterable`): the `headers` option takes the DOM's own `HeadersInit`,
// as README says, whatever the app's `lib`.
import { TokenClient } from "speech-token-client";

export function fromInit(init: HeadersInit): TokenClient {
  return new TokenClient({ brokerUrl: "/api/speech-token", headers: init });
}

export function fromProvider(get: () => Promise<HeadersInit>): TokenClient {
  return new TokenClient({ brokerUrl: "/api/speech-token", headers: get });
}

export const fromHeaders = new TokenClient({
  brokerUrl: "/api/speech-token",
  headers: new Headers({ authorization: "Bearer app-session" }),
});
