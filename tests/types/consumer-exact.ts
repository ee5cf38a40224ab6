// Type-checked by tests/e2e/typescript.test.mjs with `exactOptionalPropertyTypes`: an option
// may be given as `undefined` (the runtime reads it as absent), as apps do with settings that
// may be unset (`import.meta.env.VITE_REGION`, a config file's optional field).
import { TokenClient } from "speech-token-client";

declare const settings: {
  region?: string;
  endpoint?: string;
  margin?: number;
  timeout?: number;
  lifetime?: number;
  share?: boolean;
  method?: "GET" | "POST";
  credentials?: "same-origin" | "include" | "omit";
  headers?: Record<string, string>;
};

export const client = new TokenClient({
  brokerUrl: "/api/speech-token",
  headers: settings.headers,
  credentials: settings.credentials,
  method: settings.method,
  refreshMargin: settings.margin,
  requestTimeout: settings.timeout,
  maxLifetime: settings.lifetime,
  shareAcrossTabs: settings.share,
});

declare const sdk: {
  SpeechConfig: {
    fromAuthorizationToken(token: string, region: string): { authorizationToken: string };
    fromEndpoint(endpoint: URL): { authorizationToken: string };
  };
};

export async function configured(signal: AbortSignal | undefined): Promise<string> {
  const config = await client.speechConfig(sdk, { region: settings.region, endpoint: settings.endpoint });
  const access = await client.tokenCredential().getToken("https://cognitiveservices.azure.com/.default", { abortSignal: signal });
  return config.authorizationToken + (access?.token ?? "");
}
