//! `--relay`: the broker terminates the Speech SDK's WebSocket and connects upstream itself, so
//! the browser holds no Azure credential at all.
//!
//! The token route answers a **relay ticket** instead of a Speech token (same contract:
//! `{token: <ticket>, expiresIn, endpoint: "ws(s)://<broker>/relay/speech/…"}`), so the browser
//! module's refresh, attach and single-flight machinery work unchanged and the SDK carries the
//! ticket as it carries a token (the `Authorization` query parameter of each connection). A ticket
//! is HMAC-SHA256-signed with a random per-process key, lives
//! `config::DEFAULT_RELAY_TICKET_TTL_S` by default, and is bound to the relay route, the page's
//! origin and the user (`tid`+`oid`, or the caller class and client IP without user
//! authentication): worthless on another route, page or user. Within its lifetime it is a bearer
//! (the IP in an anonymous subject is not compared on upgrade): `--rate-limit` bounds how many
//! sessions one ticket opens one after another. On upgrade the relay checks it, strips it from the query, and connects to the Speech service with the broker's own
//! credential in an `Authorization` header (which a native client can send and a browser cannot).
//! Only the SDK's own WebSocket paths ([`SDK_PATHS`]) are relayed.
//!
//! Limits (all flags): ticket lifetime, sessions in total and per user, session duration, idle
//! time, frame size. One log line per session: user, duration, bytes each way, close reason.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite;
use zeroize::Zeroizing;

use crate::auth::Identity;
use crate::cache::TokenCache;
use crate::cloud::cloud_of;
use crate::http::{json_error, with_retry_after};
use crate::presented::presented_token;
use crate::ratelimit::{client_key, retry_after_secs, RateKey, RateLimiter};
use crate::secret::fingerprint;
use crate::shutdown::{ShutdownWatch, CLOSE_HANDSHAKE_WAIT};
use crate::upstream::now_unix_ms;

/// The path prefix of relayed connections.
pub const RELAY_PREFIX: &str = "/relay";
/// What a ticket is bound to besides origin and user.
const ROUTE: &str = "relay";
/// How every ticket begins: the format marker `rt1` and its separator, `rt1.<payload>.<mac>`. What
/// tells a ticket from a user token in a header; the MAC covers it too.
pub const TICKET_PREFIX: &str = "rt1.";
/// Read and write buffer of each WebSocket the relay holds (two per session). tungstenite's
/// defaults (128 KiB each) made a relayed session cost ~420 KiB of broker memory in `make bench`;
/// audio frames are ~3 KiB, so 16 KiB buffers lose nothing.
pub const WS_BUFFER_BYTES: usize = 16 * 1024;

pub use crate::config::RelayLimits;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Claims {
    /// Route the ticket is good for.
    r: String,
    /// Origin it was minted for (`"same-origin"` when the token request had no Origin).
    o: String,
    /// Subject: `tid/oid`, or the caller class and client ([`ticket_subject`]).
    s: String,
    /// Expiry, Unix milliseconds: what `expiresIn` counts down to, to the millisecond.
    e: u64,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    Missing,
    Malformed,
    BadSignature,
    Expired,
    WrongOrigin,
    WrongRoute,
}

impl TicketError {
    fn status(self) -> StatusCode {
        match self {
            TicketError::WrongOrigin | TicketError::WrongRoute => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
    /// Short name for logs and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketError::Missing => "missing",
            TicketError::Malformed => "malformed",
            TicketError::BadSignature => "bad-signature",
            TicketError::Expired => "expired",
            TicketError::WrongOrigin => "wrong-origin",
            TicketError::WrongRoute => "wrong-route",
        }
    }
}

/// Mints and checks relay tickets with a random per-process key.
pub struct TicketSigner {
    key: Zeroizing<[u8; 32]>,
}

impl TicketSigner {
    /// A fresh random key.
    pub fn new_random() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut key[..]).expect("OS random number generator");
        TicketSigner { key }
    }

    /// The MAC over a ticket's prefix and `payload`, ready to finalize (minting) or to compare
    /// in constant time (verifying).
    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key[..]).expect("any key length");
        m.update(TICKET_PREFIX.as_bytes());
        m.update(payload.as_bytes());
        m
    }

    /// A ticket for `subject` from `origin`, valid until `exp` (Unix milliseconds).
    pub fn mint(&self, subject: &str, origin: &str, exp: u64) -> String {
        let claims = Claims {
            r: ROUTE.into(),
            o: origin.into(),
            s: subject.into(),
            e: exp,
        };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = B64.encode(self.mac(&payload).finalize().into_bytes());
        format!("{TICKET_PREFIX}{payload}.{mac}")
    }

    /// Checks `ticket` for a connection from `origin` (`None`: no Origin header) to a broker
    /// reached as `host` at `now` (Unix milliseconds); the subject on success.
    pub fn verify(
        &self,
        ticket: &str,
        origin: Option<&str>,
        host: Option<&str>,
        now: u64,
    ) -> Result<String, TicketError> {
        let Some(rest) = ticket.strip_prefix(TICKET_PREFIX) else {
            return Err(TicketError::Malformed);
        };
        let mut parts = rest.split('.');
        let (Some(payload), Some(mac), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TicketError::Malformed);
        };
        let mac = B64.decode(mac).map_err(|_| TicketError::Malformed)?;
        self.mac(payload)
            .verify_slice(&mac)
            .map_err(|_| TicketError::BadSignature)?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TicketError::Malformed)?;
        if claims.r != ROUTE {
            return Err(TicketError::WrongRoute);
        }
        if now >= claims.e {
            return Err(TicketError::Expired);
        }
        let origin_ok = match (claims.o.as_str(), origin) {
            // minted by a same-origin request: only a same-origin WebSocket may use it
            ("same-origin", Some(o)) => same_origin(o, host),
            ("same-origin", None) => true,
            (bound, Some(o)) => crate::origin::normalize_origin(o).as_deref() == Some(bound),
            (_, None) => false,
        };
        if !origin_ok {
            return Err(TicketError::WrongOrigin);
        }
        Ok(claims.s)
    }
}

/// Whether `origin`'s host:port is the `Host` the request was sent to.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let (Ok(u), Some(host)) = (url::Url::parse(origin), host) else {
        return false;
    };
    let Some(h) = u.host_str() else { return false };
    let authority = match u.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_string(),
    };
    authority.eq_ignore_ascii_case(host)
}

/// The relay: tickets, upstream, limits, counters.
pub struct Relay {
    pub signer: TicketSigner,
    pub limits: RelayLimits,
    /// Ticket lifetime in seconds: `limits.ticket_ttl`, changed in dev by `/admin/ttl`.
    ticket_ttl_secs: AtomicU64,
    /// Where the Speech service is.
    upstream: RelayUpstream,
    /// Time to open the upstream WebSocket: `--upstream-timeout`, the bound of every upstream
    /// request the broker makes.
    connect_timeout: Duration,
    cache: Arc<TokenCache>,
    /// `--rate-limit`: each upgrade takes a token from its ticket subject's bucket
    /// ([`RateKey::Relay`]); the session caps count only the sessions open at once.
    rate: Option<Arc<RateLimiter>>,
    sessions: Arc<Semaphore>,
    per_user: Mutex<HashMap<String, usize>>,
    shutdown: ShutdownWatch,
    /// Upgrade attempts refused (any reason), sessions opened, upstream connects.
    pub refused: AtomicU64,
    pub opened: AtomicU64,
    pub upstream_connects: AtomicU64,
}

impl Relay {
    /// A relay to `upstream` with the cache's token as credential, opening each upstream
    /// WebSocket within `connect_timeout`.
    pub fn new(
        limits: RelayLimits,
        upstream: RelayUpstream,
        connect_timeout: Duration,
        cache: Arc<TokenCache>,
        rate: Option<Arc<RateLimiter>>,
        shutdown: ShutdownWatch,
    ) -> Self {
        Relay {
            rate,
            signer: TicketSigner::new_random(),
            ticket_ttl_secs: AtomicU64::new(limits.ticket_ttl.as_secs()),
            sessions: Arc::new(Semaphore::new(limits.max_sessions)),
            limits,
            upstream,
            connect_timeout,
            cache,
            per_user: Mutex::new(HashMap::new()),
            shutdown,
            refused: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            upstream_connects: AtomicU64::new(0),
        }
    }

    /// Mints a ticket for the token route: `(ticket, expires_in_seconds)`. The expiry and
    /// `expiresIn` come from one clock reading in milliseconds, so they agree to the millisecond
    /// (README: "seconds of remaining lifetime … with millisecond precision").
    pub fn ticket_for(&self, subject: &str, origin: Option<&str>) -> (String, f64) {
        let origin = origin
            .and_then(crate::origin::normalize_origin)
            .unwrap_or_else(|| "same-origin".into());
        let ttl_ms = self.ticket_ttl_secs.load(Ordering::Relaxed) * 1000;
        let now = now_unix_ms();
        let exp = now + ttl_ms;
        (
            self.signer.mint(subject, &origin, exp),
            (exp - now) as f64 / 1000.0,
        )
    }

    /// Sets the lifetime of tickets minted from now on (dev: `/admin/ttl`).
    pub fn set_ticket_ttl(&self, secs: u64) {
        self.ticket_ttl_secs.store(secs, Ordering::Relaxed);
    }

    fn enter(self: &Arc<Self>, user: &str) -> Result<SessionGuard, &'static str> {
        let permit = Arc::clone(&self.sessions)
            .try_acquire_owned()
            .map_err(|_| "too many relay sessions")?;
        let mut m = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.to_string()).or_insert(0);
        if *n >= self.limits.max_sessions_per_user {
            return Err("too many relay sessions for this user");
        }
        *n += 1;
        Ok(SessionGuard {
            relay: Arc::clone(self),
            user: user.to_string(),
            _permit: permit,
        })
    }
}

struct SessionGuard {
    relay: Arc<Relay>,
    user: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut m = self
            .relay
            .per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// Where the relay connects: one host for every service, or Azure's regional hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayUpstream {
    /// `ws(s)://host[:port]`, no path: dev (the broker's own fake service) and `--endpoint` (a
    /// custom domain or private endpoint serves every service's path on one host).
    Fixed(String),
    /// `--region`: the SDK's regional hosts, by service (`ConnectionFactoryBase.getHostSuffix`
    /// for the cloud: `.azure.cn` for `china*`, `.azure.us` for `usgov*`).
    Regional(String),
}

impl RelayUpstream {
    /// `ws(s)://host[:port]` for a connection to `path` (no leading slash): synthesis
    /// (`…cognitiveservices/websocket/v1`) on the `tts` host, V1 translation
    /// (`speech/translation/…`) on the `s2s` host, everything else (recognition, V2 translation on
    /// `stt/speech/universal/v2`) on the `stt` host — where SDK 1.52 connects for a region.
    pub fn base_for(&self, path: &str) -> String {
        match self {
            RelayUpstream::Fixed(base) => base.clone(),
            RelayUpstream::Regional(region) => {
                let suffix = cloud_of(region).speech;
                let p = path.to_ascii_lowercase();
                let service = if p.ends_with("cognitiveservices/websocket/v1") {
                    "tts"
                } else if p.starts_with("speech/translation/") {
                    "s2s"
                } else {
                    "stt"
                };
                format!("wss://{region}.{service}.{suffix}")
            }
        }
    }
}

/// The SDK's default translation path (SDK 1.52 `TranslationConnectionFactory.universalUri`).
pub const TRANSLATION_PATH: &str = "stt/speech/universal/v2";

/// The Speech SDK's WebSocket paths, the only ones the relay serves (the broker's credential
/// opens nothing else). From SDK 1.52's connection factories: `SpeechConnectionFactory`
/// (recognition: interactive, conversation, dictation; `stt/speech/universal/v` + the
/// recognition endpoint version, `2` by default and `1` for at-start language detection),
/// `ConversationTranscriberConnectionFactory` (the same), `TranslationConnectionFactory`
/// (universal v2, the V1 translation path) and `SpeechSynthesisConnectionFactory`
/// (`tts/cognitiveservices/websocket/v1`; the regional tts host also serves it without `tts/`).
pub const SDK_PATHS: [&str; 8] = [
    "speech/recognition/conversation/cognitiveservices/v1",
    "speech/recognition/interactive/cognitiveservices/v1",
    "speech/recognition/dictation/cognitiveservices/v1",
    TRANSLATION_PATH,
    "stt/speech/universal/v1",
    "speech/translation/cognitiveservices/v1",
    "tts/cognitiveservices/websocket/v1",
    "cognitiveservices/websocket/v1",
];

/// The SDK path `rest` names (ASCII case aside), in its one canonical spelling: `None` for any
/// other path. What goes upstream is always one of [`SDK_PATHS`], never the request's own text,
/// so nothing in a (percent-decoded) path — `..`, `?`, `#`, `\`, `%` — can reach the upstream URL.
pub fn sdk_path(rest: &str) -> Option<&'static str> {
    let requested = rest.trim_start_matches('/');
    SDK_PATHS
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(requested))
}

/// The upstream path for a relayed connection to `/relay/<rest>` (`None`: not an SDK path): the
/// SDK path itself, except that a `TranslationRecognizer` pointed at the recognition endpoint the
/// token route names (what `client.speechTranslationConfig(SpeechSDK)` builds) is sent to the
/// SDK's own translation path. The SDK's translation connections always carry `to` (the target
/// languages); its recognition connections never do, and a recognition path does not translate.
pub fn upstream_path(rest: &str, query: Option<&str>) -> Option<&'static str> {
    let path = sdk_path(rest)?;
    let translating = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k.eq_ignore_ascii_case("to"))
    });
    Some(if translating && path.starts_with("speech/recognition/") {
        TRANSLATION_PATH
    } else {
        path
    })
}

/// The query without the `Authorization` parameter (the ticket).
pub fn strip_ticket(query: Option<&str>) -> String {
    let Some(q) = query else { return String::new() };
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish()
}

/// Refuses an upgrade (counted in `refused`) with a JSON error whose `detail` names the reason.
pub fn refuse(relay: &Relay, status: StatusCode, kind: &str, detail: &str) -> Response {
    relay.refused.fetch_add(1, Ordering::Relaxed);
    json_error(status, kind, Some(json!({ "detail": detail })))
}

/// The `Retry-After` of an upgrade refused by a session cap, in seconds. When a session ends
/// cannot be foreseen; 5 s is the hint the broker already gives when Entra's keys are
/// unavailable (`auth::Refusal::KeysUnavailable`): it spaces a client's retries without making
/// a user wait long.
pub const SESSION_CAP_RETRY_AFTER_S: u64 = 5;

/// Refuses an upgrade over a session cap or the rate limit: 429 `rate-limited` with
/// `retryAfter` and `Retry-After` (`retry_after_s`), as the README's error table promises for
/// every 429.
fn refuse_over_cap(relay: &Relay, why: &str, retry_after_s: u64) -> Response {
    relay.refused.fetch_add(1, Ordering::Relaxed);
    let body = json!({ "detail": why, "retryAfter": retry_after_s });
    with_retry_after(
        json_error(StatusCode::TOO_MANY_REQUESTS, "rate-limited", Some(body)),
        retry_after_s,
    )
}

/// Whom a ticket is for, and so whose sessions `--relay-max-sessions-per-user` counts and whom
/// the session's log line names: the user (`tid/oid`) with `--auth entra`; without user
/// authentication, the caller class and the client the token route's rate limiter keys on
/// (`anonymous@203.0.113.7`: `--trust-proxy` honoured, IPv6 by its /64), so the cap is per
/// client and not one cap for the whole deployment.
pub fn ticket_subject(identity: &Identity, client_ip: IpAddr) -> String {
    match identity {
        Identity::User(_) => identity.subject(),
        Identity::Anonymous | Identity::SharedHeader => {
            format!("{}@{}", identity.subject(), client_key(client_ip))
        }
    }
}

/// `GET /relay/{*rest}`: validates the ticket, connects upstream, upgrades, pipes.
pub async fn relay_ws(
    State(relay): State<Arc<Relay>>,
    method: Method,
    rest: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The route serves GET (the upgrade) only: any other method is a 405, before the ticket is
    // read, like every other route of the broker.
    if method != Method::GET {
        return crate::http::method_not_allowed(Some(HeaderValue::from_static("GET")));
    }
    // A path that does not decode (not UTF-8) is no Speech SDK path either.
    let path = rest
        .ok()
        .and_then(|Path(rest)| upstream_path(&rest, query.as_deref()));
    let Some(path) = path else {
        return refuse(
            &relay,
            StatusCode::NOT_FOUND,
            "not-found",
            "not a Speech SDK WebSocket path",
        );
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let Some(ticket) = presented_token(query.as_deref(), &headers) else {
        return refuse(
            &relay,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            TicketError::Missing.as_str(),
        );
    };
    let user = match relay.signer.verify(&ticket, origin, host, now_unix_ms()) {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(reason = e.as_str(), fingerprint = %fingerprint(&ticket), "relay: ticket refused");
            let kind = if e.status() == StatusCode::FORBIDDEN {
                "forbidden"
            } else {
                "unauthorized"
            };
            return refuse(&relay, e.status(), kind, e.as_str());
        }
    };
    let ws = match ws {
        Ok(ws) => ws
            .read_buffer_size(WS_BUFFER_BYTES)
            .write_buffer_size(WS_BUFFER_BYTES)
            .max_frame_size(relay.limits.max_frame_bytes)
            .max_message_size(relay.limits.max_frame_bytes),
        Err(rejection) => return crate::http::ws_rejection(rejection),
    };
    // Before the session caps and the upstream: a refused upgrade costs no upstream connect.
    if let Some(rate) = &relay.rate {
        if let Err(wait) = rate.check(RateKey::Relay(user.clone()), Instant::now()) {
            let secs = retry_after_secs(wait);
            return refuse_over_cap(&relay, "too many relay connections for this user", secs);
        }
    }
    let guard = match relay.enter(&user) {
        Ok(g) => g,
        Err(why) => return refuse_over_cap(&relay, why, SESSION_CAP_RETRY_AFTER_S),
    };
    // the upstream credential: the broker's own token, in a header
    let credential = match relay.cache.get().await {
        Ok(t) => t,
        Err(e) => return refuse(&relay, StatusCode::BAD_GATEWAY, "upstream", &e.detail),
    };
    let base = relay.upstream.base_for(path);
    let q = strip_ticket(query.as_deref());
    let url = if q.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{path}?{q}")
    };
    let mut request =
        match tungstenite::client::IntoClientRequest::into_client_request(url.as_str()) {
            Ok(r) => r,
            Err(_) => {
                return refuse(
                    &relay,
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "bad relay path",
                )
            }
        };
    let mut auth =
        match axum::http::HeaderValue::from_str(&format!("Bearer {}", credential.token.expose())) {
            Ok(v) => v,
            Err(_) => {
                return refuse(
                    &relay,
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    "token is not a header value",
                )
            }
        };
    auth.set_sensitive(true);
    request.headers_mut().insert(header::AUTHORIZATION, auth);
    relay.upstream_connects.fetch_add(1, Ordering::Relaxed);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .max_frame_size(Some(relay.limits.max_frame_bytes))
        .max_message_size(Some(relay.limits.max_frame_bytes));
    let upstream = match tokio::time::timeout(
        relay.connect_timeout,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    {
        Ok(Ok((s, _))) => s,
        Ok(Err(e)) => {
            let detail = match &e {
                tungstenite::Error::Http(r) => {
                    format!("Speech service answered {}", r.status().as_u16())
                }
                _ => "Speech service unreachable".to_string(),
            };
            tracing::warn!(user = %user, detail = %detail, "relay: upstream connect failed");
            return refuse(&relay, StatusCode::BAD_GATEWAY, "upstream", &detail);
        }
        // an upstream timeout is an upstream failure, as on the token route: 502 `upstream`
        Err(_) => {
            tracing::warn!(user = %user, "relay: upstream connect timed out");
            return refuse(
                &relay,
                StatusCode::BAD_GATEWAY,
                "upstream",
                "Speech service timed out",
            );
        }
    };
    relay.opened.fetch_add(1, Ordering::Relaxed);
    let limits = relay.limits;
    let going_away = relay.shutdown.going_away();
    // held until the log line is written: shutdown waits for it
    let hold = relay.shutdown.hold();
    let path_for_log = format!("/{path}");
    ws.on_upgrade(move |socket| async move {
        let started = Instant::now();
        let outcome = pipe(socket, upstream, limits, going_away).await;
        tracing::info!(
            user = %user,
            path = %path_for_log,
            duration_ms = started.elapsed().as_millis() as u64,
            bytes_up = outcome.up,
            bytes_down = outcome.down,
            close = outcome.reason,
            "relay session"
        );
        drop(guard);
        drop(hold);
    })
}

/// "Message too big" (RFC 6455 §7.4.1).
const CLOSE_TOO_BIG: u16 = 1009;
/// "Protocol error" (RFC 6455 §7.4.1).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// The close code a failed read from the browser side calls for: 1009 for a frame or message
/// over the limit, 1002 for a protocol violation, `None` when the connection is simply gone.
fn client_error_code(e: axum::Error) -> Option<u16> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some(CLOSE_TOO_BIG),
        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => Some(CLOSE_PROTOCOL_ERROR),
        _ => None,
    }
}

/// How a relayed session ended.
struct Outcome {
    up: u64,
    down: u64,
    reason: &'static str,
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn to_upstream(m: Message) -> Option<tungstenite::Message> {
    Some(match m {
        Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
        Message::Binary(b) => tungstenite::Message::Binary(b),
        Message::Ping(p) => tungstenite::Message::Ping(p),
        Message::Pong(p) => tungstenite::Message::Pong(p),
        Message::Close(_) => return None,
    })
}

fn to_client(m: tungstenite::Message) -> Option<Message> {
    Some(match m {
        tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
        tungstenite::Message::Binary(b) => Message::Binary(b),
        tungstenite::Message::Ping(p) => Message::Ping(p),
        tungstenite::Message::Pong(p) => Message::Pong(p),
        tungstenite::Message::Close(_) | tungstenite::Message::Frame(_) => return None,
    })
}

fn upstream_close(code: u16, reason: &str) -> tungstenite::Message {
    tungstenite::Message::Close(Some(tungstenite::protocol::CloseFrame {
        code: code.into(),
        reason: reason.to_string().into(),
    }))
}

fn client_close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

type ClientSink = SplitSink<WebSocket, Message>;
type ClientStream = SplitStream<WebSocket>;
type UpstreamSink = SplitSink<Upstream, tungstenite::Message>;
type UpstreamStream = SplitStream<Upstream>;

/// How a session ends: the close frame (code, reason) each side is sent — `None` when that side
/// is gone or closed the session itself — and the close reason the log line names.
struct Ending {
    upstream: Option<(u16, String)>,
    client: Option<(u16, String)>,
    reason: &'static str,
}

impl Ending {
    /// The same close frame to both sides.
    fn both(code: u16, why: &str, reason: &'static str) -> Self {
        Ending {
            upstream: Some((code, why.to_string())),
            client: Some((code, why.to_string())),
            reason,
        }
    }
    /// The service is gone: the browser gets 1011 (the SDK reports an error, it does not hang).
    fn upstream_lost(reason: &'static str) -> Self {
        Ending {
            upstream: None,
            client: Some((1011, "Speech service connection lost".to_string())),
            reason,
        }
    }
    /// The browser is gone: the service is told so.
    fn client_gone(reason: &'static str) -> Self {
        Ending {
            upstream: Some((1000, "client gone".to_string())),
            client: None,
            reason,
        }
    }
}

/// Pipes frames both ways and closes both sides together. Each direction awaits its send before
/// its next read (backpressure), and the two run side by side, so a browser that stops reading
/// stalls only the service-to-browser direction: the duration limit, shutdown and the idle timer
/// (browser frames only) still end the session.
async fn pipe(
    client: WebSocket,
    upstream: Upstream,
    limits: RelayLimits,
    mut going_away: watch::Receiver<bool>,
) -> Outcome {
    let (mut cs, mut cr) = client.split();
    let (mut us, mut ur) = upstream.split();
    let (mut up, mut down) = (0, 0);
    let ending = tokio::select! {
        e = browser_to_service(&mut cr, &mut us, limits.idle_timeout, &mut up) => e,
        e = service_to_browser(&mut ur, &mut cs, &mut down) => e,
        _ = tokio::time::sleep(limits.max_duration) => {
            Ending::both(1000, "session duration limit", "max-duration")
        }
        _ = going_away.changed() => Ending::both(1001, "broker shutting down", "shutdown"),
    };
    close_both(&mut cs, &mut us, &ending).await;
    Outcome {
        up,
        down,
        reason: ending.reason,
    }
}

/// Browser → service, counting the bytes in `up`; ends after `idle` without a browser frame
/// (frames from the service do not count: `--relay-idle-timeout` is about the browser).
async fn browser_to_service(
    cr: &mut ClientStream,
    us: &mut UpstreamSink,
    idle: Duration,
    up: &mut u64,
) -> Ending {
    loop {
        let m = match tokio::time::timeout(idle, cr.next()).await {
            Err(_) => {
                return Ending {
                    upstream: Some((1000, "idle".to_string())),
                    client: Some((1000, "idle timeout".to_string())),
                    reason: "idle",
                }
            }
            Ok(None) => return Ending::client_gone("client-gone"),
            Ok(Some(Err(e))) => return client_failed(e),
            Ok(Some(Ok(Message::Close(c)))) => {
                let code = c.as_ref().map(|c| c.code).unwrap_or(1000);
                let why = c.as_ref().map(|c| c.reason.as_str()).unwrap_or("");
                return Ending::both(code, why, "client-closed");
            }
            Ok(Some(Ok(m))) => m,
        };
        *up += frame_len(&m);
        if let Some(m) = to_upstream(m) {
            if us.send(m).await.is_err() {
                return Ending::upstream_lost("upstream-send-failed");
            }
        }
    }
}

/// A failed read from the browser: a frame over --relay-max-frame (or a protocol violation)
/// ends the session with the code that says so, on both sides.
fn client_failed(e: axum::Error) -> Ending {
    let (code, why, reason) = match client_error_code(e) {
        Some(CLOSE_TOO_BIG) => (CLOSE_TOO_BIG, "frame too large", "client-frame-too-large"),
        Some(code) => (code, "protocol error", "client-protocol-error"),
        None => return Ending::client_gone("client-gone"),
    };
    Ending {
        upstream: Some((1000, why.to_string())),
        client: Some((code, why.to_string())),
        reason,
    }
}

/// Service → browser, counting the bytes in `down`.
async fn service_to_browser(
    ur: &mut UpstreamStream,
    cs: &mut ClientSink,
    down: &mut u64,
) -> Ending {
    loop {
        match ur.next().await {
            None | Some(Err(_)) => return Ending::upstream_lost("upstream-gone"),
            Some(Ok(tungstenite::Message::Close(c))) => {
                // the service's code and reason (e.g. why it refused the audio) reach the SDK,
                // which reports them in its cancellation details
                let code = c.as_ref().map(|c| u16::from(c.code)).unwrap_or(1000);
                let why = c.as_ref().map(|c| c.reason.to_string()).unwrap_or_default();
                return Ending {
                    upstream: None,
                    client: Some((code, why)),
                    reason: "upstream-closed",
                };
            }
            Some(Ok(m)) => {
                if let Some(m) = to_client(m) {
                    *down += frame_len(&m);
                    if cs.send(m).await.is_err() {
                        return Ending::client_gone("client-send-failed");
                    }
                }
            }
        }
    }
}

/// Sends each side its close frame and closes it, both at once, each within
/// [`CLOSE_HANDSHAKE_WAIT`] (a browser that stopped reading cannot take it); a side that has not
/// taken it by then is disconnected when the session's sockets are dropped.
async fn close_both(cs: &mut ClientSink, us: &mut UpstreamSink, ending: &Ending) {
    let client = async {
        if let Some((code, why)) = &ending.client {
            let _ = cs.send(client_close(*code, why)).await;
        }
        let _ = cs.close().await;
    };
    let upstream = async {
        if let Some((code, why)) = &ending.upstream {
            let _ = us.send(upstream_close(*code, why)).await;
        }
        let _ = us.close().await;
    };
    let _ = tokio::join!(
        tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, client),
        tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, upstream)
    );
}

fn frame_len(m: &Message) -> u64 {
    match m {
        Message::Text(t) => t.len() as u64,
        Message::Binary(b) => b.len() as u64,
        _ => 0,
    }
}

/// The Speech SDK's custom-domain redirect probe: given an endpoint without a path, the SDK
/// generates the service path and asks `GET https://<host>/<path>?GenerateRedirectResponse=true`
/// where to connect, expecting the URL as plain text (SDK 1.4x, `ConnectionFactoryBase.
/// getRedirectUrlFromEndpoint`). The relay answers with the same path under `/relay/`, so an app
/// can also configure `SpeechConfig.fromEndpoint(new URL("wss://<broker>"))`. Other requests to
/// these paths, and probes of a path that is not one of [`SDK_PATHS`], get 404.
pub async fn redirect_probe(
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let probing = query.as_deref().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "GenerateRedirectResponse" && v.eq_ignore_ascii_case("true"))
    });
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let (true, Some(host), Some(path)) = (probing, host, sdk_path(uri.path())) else {
        return json_error(StatusCode::NOT_FOUND, "not-found", None);
    };
    let mut r = Response::new(axum::body::Body::from(format!(
        "https://{host}{RELAY_PREFIX}/{path}"
    )));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, crate::http::NO_STORE);
    r
}

/// The relay endpoint the token route names: `ws://` on a loopback broker, else `wss://` (the
/// broker runs behind a TLS-terminating proxy), on the request's allow-listed `Host`.
pub fn relay_endpoint(host: &str, local: SocketAddr, dev: bool) -> String {
    let scheme = if dev && local.ip().is_loopback() {
        "ws"
    } else {
        "wss"
    };
    format!("{scheme}://{host}{RELAY_PREFIX}/speech/recognition/conversation/cognitiveservices/v1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_bound_and_expire() {
        let s = TicketSigner::new_random();
        let t = s.mint("tid/oid", "https://app.example.com", 1000);
        assert!(speech_token_client::engine::token::is_valid_token_text(&t));
        assert_eq!(
            s.verify(&t, Some("https://app.example.com"), Some("b"), 999),
            Ok("tid/oid".into())
        );
        assert_eq!(
            s.verify(&t, Some("https://app.example.com"), Some("b"), 1000),
            Err(TicketError::Expired)
        );
        assert_eq!(
            s.verify(&t, Some("https://evil.example"), Some("b"), 999),
            Err(TicketError::WrongOrigin)
        );
        assert_eq!(
            s.verify(&t, None, Some("b"), 999),
            Err(TicketError::WrongOrigin)
        );
        let other = TicketSigner::new_random();
        assert_eq!(
            other.verify(&t, Some("https://app.example.com"), Some("b"), 999),
            Err(TicketError::BadSignature)
        );
        // tampered claims
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] =
            B64.encode(br#"{"r":"relay","o":"https://app.example.com","s":"other","e":99999}"#);
        assert_eq!(
            s.verify(
                &parts.join("."),
                Some("https://app.example.com"),
                Some("b"),
                999
            ),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            s.verify("garbage", None, None, 0),
            Err(TicketError::Malformed)
        );
        // the format: `rt1.<payload>.<mac>`, nothing more or less
        let payload_mac = t.strip_prefix(TICKET_PREFIX).unwrap();
        for bad in [
            payload_mac.to_string(),
            format!("rt2.{payload_mac}"),
            format!("{t}.x"),
            TICKET_PREFIX.to_string(),
        ] {
            assert_eq!(
                s.verify(&bad, Some("https://app.example.com"), Some("b"), 999),
                Err(TicketError::Malformed),
                "{bad}"
            );
        }
        // same-origin tickets
        let so = s.mint("x", "same-origin", 1000);
        assert!(s
            .verify(
                &so,
                Some("http://127.0.0.1:8787"),
                Some("127.0.0.1:8787"),
                1
            )
            .is_ok());
        assert_eq!(
            s.verify(
                &so,
                Some("http://127.0.0.1:9999"),
                Some("127.0.0.1:8787"),
                1
            ),
            Err(TicketError::WrongOrigin)
        );
    }

    #[test]
    fn each_service_goes_to_its_host_and_path() {
        let r = RelayUpstream::Regional("westeurope".into());
        assert_eq!(
            r.base_for("speech/recognition/conversation/cognitiveservices/v1"),
            "wss://westeurope.stt.speech.microsoft.com"
        );
        assert_eq!(
            r.base_for("stt/speech/universal/v2"),
            "wss://westeurope.stt.speech.microsoft.com"
        );
        assert_eq!(
            r.base_for("tts/cognitiveservices/websocket/v1"),
            "wss://westeurope.tts.speech.microsoft.com"
        );
        assert_eq!(
            r.base_for("cognitiveservices/websocket/v1"),
            "wss://westeurope.tts.speech.microsoft.com"
        );
        assert_eq!(
            r.base_for("speech/translation/cognitiveservices/v1"),
            "wss://westeurope.s2s.speech.microsoft.com"
        );
        assert_eq!(
            RelayUpstream::Regional("chinaeast2".into()).base_for("stt/speech/universal/v2"),
            "wss://chinaeast2.stt.speech.azure.cn"
        );
        let f = RelayUpstream::Fixed("wss://my.cognitiveservices.azure.com".into());
        assert_eq!(
            f.base_for("tts/cognitiveservices/websocket/v1"),
            "wss://my.cognitiveservices.azure.com"
        );
        // translation on the advertised recognition endpoint goes to the translation path
        let rec = "speech/recognition/conversation/cognitiveservices/v1";
        assert_eq!(
            upstream_path(rec, Some("from=en-US&to=de&scenario=conversation")),
            Some(TRANSLATION_PATH)
        );
        assert_eq!(
            upstream_path(rec, Some("language=en-US&format=simple")),
            Some(rec)
        );
        assert_eq!(upstream_path(&format!("/{rec}"), None), Some(rec));
        assert_eq!(
            upstream_path("tts/cognitiveservices/websocket/v1", Some("to=de")),
            Some("tts/cognitiveservices/websocket/v1")
        );
        assert_eq!(
            upstream_path(
                "speech/translation/cognitiveservices/v1",
                Some("from=en-US&to=de")
            ),
            Some("speech/translation/cognitiveservices/v1")
        );
        // anything else is no SDK path: nothing of it reaches the upstream URL
        for other in [
            "",
            "foo",
            "../sts/v1.0/issueToken",
            "speech/recognition/conversation/cognitiveservices/v1?x=1",
            "speech/recognition/conversation/cognitiveservices/v1#x",
            "speech/recognition/conversation/cognitiveservices/v1/",
            "speech\\recognition\\conversation\\cognitiveservices\\v1",
            "speech/recognition/conversation/cognitiveservices/v1%20",
        ] {
            assert_eq!(upstream_path(other, None), None, "{other}");
        }
        assert_eq!(
            sdk_path("/TTS/cognitiveservices/websocket/V1"),
            Some("tts/cognitiveservices/websocket/v1")
        );
    }

    #[test]
    fn tickets_name_the_user_or_else_the_client() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ticket_subject(&Identity::Anonymous, ip("203.0.113.7")),
            "anonymous@203.0.113.7"
        );
        assert_eq!(
            ticket_subject(&Identity::SharedHeader, ip("::ffff:203.0.113.7")),
            "header@203.0.113.7"
        );
        assert_eq!(
            ticket_subject(&Identity::Anonymous, ip("2001:db8:1:2:aaaa::1")),
            ticket_subject(&Identity::Anonymous, ip("2001:db8:1:2:bbbb::2")),
            "one IPv6 subscriber (/64), one cap"
        );
        let user = Identity::User(crate::auth::User {
            tid: "t".into(),
            oid: "o".into(),
        });
        assert_eq!(ticket_subject(&user, ip("203.0.113.7")), "t/o");
    }

    #[test]
    fn the_ticket_is_stripped_from_the_query() {
        assert_eq!(
            strip_ticket(Some(
                "language=en-US&Authorization=Bearer%20rt1.a.b&X-ConnectionId=1"
            )),
            "language=en-US&X-ConnectionId=1"
        );
        assert_eq!(strip_ticket(None), "");
    }
}
