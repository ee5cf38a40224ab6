//! Precise TypeScript types for the JS API, appended to the generated `.d.ts`.
//! No `any` in the public surface: options, events, targets and the SDK are typed here.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Request headers: the DOM's `HeadersInit` (a record of strings, a `Headers`, name/value arrays), or an iterable of name/value pairs (a `Map`); checked by `new Headers()`. */
export type TokenClientHeaders = HeadersInit | Record<string, string> | Iterable<readonly [string, string]>;

/** What `new TokenClient(options)` accepts. Unknown keys are rejected (kind "config"); an option given as `undefined` is absent. */
export interface TokenClientOptions {
  /** The token broker: https, a same-origin relative URL, or http on a loopback host. */
  brokerUrl: string;
  /** Extra request headers (e.g. the app's own session bearer): a record of strings, a `Headers` or name/value pairs; or a function returning them (or `null`/`undefined`: none) per request. */
  headers?: TokenClientHeaders | (() => TokenClientHeaders | null | undefined | Promise<TokenClientHeaders | null | undefined>) | null | undefined;
  /** Cookie policy for the broker request. Default "same-origin". */
  credentials?: "same-origin" | "include" | "omit" | undefined;
  /** HTTP method. Default "GET"; "POST" sends an empty body. */
  method?: "GET" | "POST" | undefined;
  /** Seconds before expiry to refresh. Default max(30, 20% of the lifetime), never more than half of it. */
  refreshMargin?: number | undefined;
  /** Broker request timeout in milliseconds. Default 10000. */
  requestTimeout?: number | undefined;
  /** Seconds after which a token is dropped from memory even if it lives longer. Default 3600. */
  maxLifetime?: number | undefined;
  /**
   * Cross-tab single flight. Default false. With true, tabs of this origin using the same brokerUrl
   * share one broker request per refresh: a Web Lock elects the tab that fetches, and the token
   * reaches the others over a BroadcastChannel (memory only, never storage); each tab validates it
   * and keeps its own expiry judgement. A peer hands over only a token and how long it is usable:
   * region and endpoint always come from the tab's own broker, so each tab fetches its first
   * token itself; a tab whose token ran out asks its peers first (150 ms).
   * A tab that closes, stalls or holds the lock never blocks the others nor makes their token lapse (a lock wait is bounded by requestTimeout and ends a round trip before the held token stops being usable).
   * Without Web Locks or BroadcastChannel the client fetches alone. Use only when every tab of the
   * origin may use the same token (the same user/session).
   */
  shareAcrossTabs?: boolean | undefined;
}

/** `client.status`. */
export type TokenClientStatus = "idle" | "fetching" | "valid" | "refreshing" | "expired" | "error" | "disposed";

/** The `kind` of every error this module throws or rejects with. */
export type SpeechTokenErrorKind =
  | "network" | "timeout" | "http" | "unauthorized" | "forbidden" | "rate-limited"
  | "redirected" | "invalid-response" | "config" | "headers" | "disposed";

/** Errors are plain `Error`s named "SpeechTokenError" with a `kind`. They never contain a token. */
export interface SpeechTokenError extends Error {
  name: "SpeechTokenError";
  kind: SpeechTokenErrorKind;
  /** HTTP status, for kinds http, unauthorized, forbidden, rate-limited. */
  status?: number;
  /** Seconds from the broker's Retry-After header. */
  retryAfter?: number;
}

/** Event details. None of them contains the token: read `client.token` in a listener. */
export interface TokenClientEventMap {
  token: { expiresAt: number; region?: string | undefined; endpoint?: string | undefined };
  refreshing: Record<string, never>;
  error: { error: SpeechTokenError };
  expired: Record<string, never>;
  status: { status: TokenClientStatus };
  detach: { target: AuthorizationTokenTarget; reason: "closed" };
}

/** Anything with an `authorizationToken` setter: SpeechConfig, recognizers, synthesizers… */
export interface AuthorizationTokenTarget {
  authorizationToken: string;
}

/** The parts of `SpeechConfig` this module touches. */
export interface SpeechConfigLike extends AuthorizationTokenTarget {}

/** A Speech SDK config class (`SpeechConfig`, `SpeechTranslationConfig`): the factories this module calls. */
export interface SpeechConfigFactoryLike {
  fromAuthorizationToken(authorizationToken: string, region: string): SpeechConfigLike;
  fromEndpoint(endpoint: URL): SpeechConfigLike;
}

/** The Speech SDK namespace (`import * as SpeechSDK from "microsoft-cognitiveservices-speech-sdk"`), as `speechConfig()` uses it. */
export interface SpeechSdkLike {
  SpeechConfig: SpeechConfigFactoryLike;
}

/** The Speech SDK namespace, as `speechTranslationConfig()` uses it. */
export interface TranslationSdkLike {
  SpeechTranslationConfig: SpeechConfigFactoryLike;
}

/**
 * Overrides for `speechConfig()`. Precedence: `endpoint` here, then `region` here, then the
 * broker's endpoint, then the broker's region (an explicit argument always wins).
 */
export interface SpeechConfigOptions {
  region?: string | undefined;
  /** A `wss:`/`https:` URL, as a string or a `URL` (which stands for its `href`). */
  endpoint?: string | URL | undefined;
}

/** `@azure/core-auth`'s AccessToken, as `tokenCredential().getToken()` resolves. */
export interface AccessTokenLike {
  token: string;
  expiresOnTimestamp: number;
  refreshAfterTimestamp?: number;
  tokenType?: "Bearer";
}

/** `@azure/core-auth`'s TokenCredential, for `SpeechConfig.fromEndpoint(url, credential)`. */
export interface TokenCredentialLike {
  getToken(scopes: string | string[], options?: { abortSignal?: AbortSignal | undefined }): Promise<AccessTokenLike | null>;
}

export interface TokenClient {
  /**
   * Waits for a token and builds an attached config of the SDK's own type (`SpeechSDK.SpeechConfig`):
   * `fromEndpoint(new URL(endpoint))` or `fromAuthorizationToken(token, region)` (see
   * `SpeechConfigOptions` for which wins).
   */
  speechConfig<S extends SpeechSdkLike>(sdk: S, options?: SpeechConfigOptions): Promise<ReturnType<S["SpeechConfig"]["fromAuthorizationToken"]>>;
  /** The same as `speechConfig()`, for `SpeechTranslationConfig` (`SpeechSDK.SpeechTranslationConfig`). */
  speechTranslationConfig<S extends TranslationSdkLike>(sdk: S, options?: SpeechConfigOptions): Promise<ReturnType<S["SpeechTranslationConfig"]["fromAuthorizationToken"]>>;
  /** Subscribes to an event; returns the function that unsubscribes (at once, even during an event). */
  on<K extends keyof TokenClientEventMap>(event: K, listener: (detail: TokenClientEventMap[K]) => void): () => void;
}
"#;
