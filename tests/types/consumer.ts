// Compiled with `tsc --strict --noEmit` against the shipped .d.ts (tests/e2e/package.test.mjs).
// Uses every API member; each `@ts-expect-error` proves a misuse is caught (if the types were
// `any`, the error would not happen and tsc would fail on the unused directive).
import init, {
  TokenClient,
  type TokenClientOptions,
  type TokenClientStatus,
  type SpeechTokenError,
  type AccessTokenLike,
  type SpeechSdkLike,
  type TranslationSdkLike,
} from "speech-token-client";

export async function use(sdk: SpeechSdkLike & TranslationSdkLike): Promise<void> {
  await init();
  const options: TokenClientOptions = {
    brokerUrl: "/api/speech-token",
    headers: async () => ({ authorization: "Bearer app-session" }),
    credentials: "same-origin",
    method: "POST",
    refreshMargin: 60,
    requestTimeout: 5000,
    maxLifetime: 600,
  };
  const client = new TokenClient(options);
  // any HeadersInit of strings: a Headers object, name/value pairs
  const fromHeaders = new TokenClient({ brokerUrl: "/api/speech-token", headers: new Headers({ authorization: "Bearer s" }) });
  const fromPairs = new TokenClient({ brokerUrl: "/api/speech-token", headers: () => [["x-app", "1"]] as const });
  // @ts-expect-error a header value must be a string
  const badValue = new TokenClient({ brokerUrl: "/api/speech-token", headers: { "x-app": 5 } });
  fromHeaders.dispose();
  fromPairs.dispose();
  badValue.dispose();
  const token: string = await client.getToken();
  const fresh: string = await client.refreshNow();
  const now: string | undefined = client.token;
  const expiresAt: number | undefined = client.expiresAt;
  const next: number | undefined = client.nextRefreshAt;
  const region: string | undefined = client.region;
  const endpoint: string | undefined = client.endpoint;
  const status: TokenClientStatus = client.status;
  const count: number = client.requestCount + client.attachedCount;
  const off: () => void = client.on("token", (detail) => {
    const at: number = detail.expiresAt;
    void at;
  });
  client.on("error", ({ error }) => {
    const e: SpeechTokenError = error;
    const kind: "network" | "timeout" | "http" | "unauthorized" | "forbidden" | "rate-limited" | "redirected" | "invalid-response" | "config" | "headers" | "disposed" = e.kind;
    void kind;
  });
  client.on("status", ({ status }) => void (status satisfies TokenClientStatus));
  const config = await client.speechConfig(sdk, { region: "westeurope" });
  const custom = await client.speechConfig(sdk, { endpoint: new URL("wss://speech.example/stt") });
  // @ts-expect-error an endpoint is a string or a URL
  await client.speechConfig(sdk, { endpoint: 443 });
  const translation = await client.speechTranslationConfig(sdk);
  client.attach(config);
  client.attach({ authorizationToken: "" });
  client.detach(config);
  const credential = client.tokenCredential();
  const access: AccessTokenLike | null = await credential.getToken("https://cognitiveservices.azure.com/.default");
  void [token, fresh, now, expiresAt, next, region, endpoint, status, count, custom, translation, access];
  off();
  client.dispose();

  // @ts-expect-error brokerUrl is required
  new TokenClient({});
  // @ts-expect-error method must be GET or POST
  new TokenClient({ brokerUrl: "/t", method: "PUT" });
  // @ts-expect-error unknown option (a typo of brokerUrl)
  new TokenClient({ brokerURL: "/t" });
  // @ts-expect-error refreshMargin is a number of seconds
  new TokenClient({ brokerUrl: "/t", refreshMargin: "60" });
  // @ts-expect-error no such event
  client.on("tokens", () => {});
  // @ts-expect-error the token event's detail has no token
  client.on("token", (detail) => detail.token);
  // @ts-expect-error getToken resolves a string, not a number
  const wrong: number = await client.getToken();
  // @ts-expect-error attach needs an authorizationToken target
  client.attach({ token: "x" });
  // @ts-expect-error status is a closed union
  const s: "ready" = client.status;
  // @ts-expect-error token is read-only
  client.token = "stolen";
  void [wrong, s];
}
