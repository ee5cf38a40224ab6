//! Shared state, the router, and the token / admin handlers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::services::ServeDir;

use crate::cache::{CachedToken, TokenCache};
use crate::config::{ModeSettings, Settings, MAX_TTL, MIN_TTL};
use crate::devjwt::DevSigner;
use crate::http::{
    bad_request, ct_eq, json_error, json_response, kind_for_status, with_retry_after, NO_CACHE,
    NO_STORE,
};
use crate::origin::{allowed_request_headers, is_loopback_peer, OriginDecision, OriginPolicy};
use crate::ratelimit::RateLimiter;
use crate::speech::{speech_ws, SpeechBehaviour, SpeechConn};
use crate::upstream::{http_client, DevUpstream, EntraUpstream, KeyUpstream, Upstream};

pub const SPEECH_PATH: &str = "/speech/recognition/conversation/cognitiveservices/v1";
const MAX_RECORDED_CONNECTIONS: usize = 10_000;

/// A scripted answer for the next token requests (`POST /admin/fail`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailPlan {
    pub status: u16,
    #[serde(default = "one")]
    pub count: u64,
    pub retry_after: Option<u64>,
    /// Sent with status 200 instead of the error (malformed-answer tests).
    pub body: Option<String>,
    pub content_type: Option<String>,
    /// Location of a 3xx answer (default `/`).
    pub location: Option<String>,
}
fn one() -> u64 {
    1
}

/// dev-mode knobs and records.
pub struct DevState {
    pub signer: Arc<DevSigner>,
    pub ttl: Arc<AtomicU64>,
    outage_until: Mutex<Option<Instant>>,
    slow_ms: AtomicU64,
    fail: Mutex<Option<FailPlan>>,
    speech: Mutex<SpeechBehaviour>,
    connections: Mutex<VecDeque<Arc<SpeechConn>>>,
}

impl DevState {
    pub fn record_connection(&self, c: Arc<SpeechConn>) {
        let mut v = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= MAX_RECORDED_CONNECTIONS {
            v.pop_front();
        }
        v.push_back(c);
    }
    pub fn speech_behaviour(&self) -> SpeechBehaviour {
        *self.speech.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn in_outage(&self) -> bool {
        let g = self.outage_until.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|until| Instant::now() < until)
    }
    fn take_fail(&self) -> Option<FailPlan> {
        let mut g = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        let plan = g.as_mut()?;
        if plan.count == 0 {
            *g = None;
            return None;
        }
        plan.count -= 1;
        let out = plan.clone();
        if plan.count == 0 {
            *g = None;
        }
        Some(out)
    }
}

pub struct AppState {
    pub mode: &'static str,
    pub cache: Arc<TokenCache>,
    pub origins: OriginPolicy,
    pub rate: Option<RateLimiter>,
    pub require_header: Option<(HeaderName, HeaderValue)>,
    pub dev: Option<DevState>,
    pub local: SocketAddr,
    pub token_requests: AtomicU64,
    pub token_ok: AtomicU64,
}

/// `ws://host:port` of this broker, as pages should reach it.
pub fn public_authority(local: SocketAddr) -> String {
    if local.ip().is_unspecified() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    }
}

pub fn build_state(settings: &Settings, local: SocketAddr) -> Arc<AppState> {
    let mut dev = None;
    let upstream = match &settings.mode {
        ModeSettings::Dev { ttl } => {
            let signer = Arc::new(DevSigner::new_random());
            let ttl = Arc::new(AtomicU64::new(*ttl));
            dev = Some(DevState {
                signer: Arc::clone(&signer),
                ttl: Arc::clone(&ttl),
                outage_until: Mutex::new(None),
                slow_ms: AtomicU64::new(0),
                fail: Mutex::new(None),
                speech: Mutex::new(SpeechBehaviour::default()),
                connections: Mutex::new(VecDeque::new()),
            });
            Upstream::Dev(DevUpstream {
                signer,
                ttl,
                endpoint: format!("ws://{}{SPEECH_PATH}", public_authority(local)),
            })
        }
        ModeSettings::Key {
            key,
            region,
            sts_base,
        } => Upstream::Key(KeyUpstream {
            client: http_client(sts_base, settings.upstream_timeout),
            key: key.clone(),
            region: region.clone(),
            sts_base: sts_base.clone(),
        }),
        ModeSettings::Entra {
            credential,
            target,
            max_ttl,
        } => {
            let target_url = match credential {
                crate::config::EntraCredential::ClientSecret { authority, .. } => {
                    authority.as_str()
                }
                crate::config::EntraCredential::AppService { endpoint, .. } => endpoint.as_str(),
                crate::config::EntraCredential::Imds { base, .. } => base.as_str(),
            };
            Upstream::Entra(EntraUpstream {
                client: http_client(target_url, settings.upstream_timeout),
                credential: credential.clone(),
                target: target.clone(),
                max_ttl: *max_ttl,
            })
        }
    };
    Arc::new(AppState {
        mode: settings.mode.name(),
        cache: TokenCache::new(upstream),
        origins: OriginPolicy::new(
            settings.allow_origins.clone(),
            settings.allow_loopback_origins,
            local,
        ),
        rate: RateLimiter::new(settings.rate_limit, settings.rate_burst),
        require_header: settings.require_header.clone(),
        dev,
        local,
        token_requests: AtomicU64::new(0),
        token_ok: AtomicU64::new(0),
    })
}

pub fn content_security_policy(settings: &Settings, local: SocketAddr) -> String {
    let connect = match &settings.mode {
        ModeSettings::Dev { .. } => format!("'self' ws://{}", public_authority(local)),
        ModeSettings::Key { region, .. } => format!(
            "'self' wss://{region}.stt.speech.microsoft.com https://{region}.stt.speech.microsoft.com wss://{region}.tts.speech.microsoft.com"
        ),
        ModeSettings::Entra { target, .. } => match target {
            crate::config::EntraTarget::ResourceId { region, .. } => format!(
                "'self' wss://{region}.stt.speech.microsoft.com https://{region}.stt.speech.microsoft.com wss://{region}.tts.speech.microsoft.com"
            ),
            crate::config::EntraTarget::Endpoint { endpoint, .. } => {
                let host = url::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
                format!("'self' wss://{host} https://{host}")
            }
        },
    };
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src {connect}; worker-src 'self' blob:; \
         style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
}

pub fn router(settings: &Settings, state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/api/speech-token",
            get(token_handler)
                .post(token_handler)
                .options(|| async { StatusCode::NO_CONTENT })
                .fallback(|| async { method_not_allowed() }),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            origin_guard,
        ));

    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api);

    if state.dev.is_some() {
        let admin = Router::new()
            .route("/admin/ttl", post(admin_ttl))
            .route("/admin/outage", post(admin_outage))
            .route("/admin/slow", post(admin_slow))
            .route("/admin/fail", post(admin_fail))
            .route("/admin/speech", post(admin_speech))
            .route("/admin/stats", get(admin_stats))
            .route("/admin/reset", post(admin_reset))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                origin_guard,
            ))
            .route_layer(middleware::from_fn(loopback_only));
        app = app
            .merge(admin)
            .route("/speech/{*rest}", any(speech_ws))
            .route("/stt/speech/{*rest}", any(speech_ws));
    }

    let csp = HeaderValue::from_str(&content_security_policy(settings, state.local))
        .expect("CSP is a header value");
    let mut statics: Router = Router::new();
    if let Some(p) = &settings.pkg {
        statics = statics.nest_service("/pkg", ServeDir::new(p));
    }
    if let Some(v) = &settings.vendor {
        statics = statics.nest_service("/vendor", ServeDir::new(v));
    }
    statics = match &settings.www {
        Some(w) => statics.fallback_service(ServeDir::new(w)),
        None => statics.fallback(|| async { json_error(StatusCode::NOT_FOUND, "not-found", None) }),
    };
    let statics = statics.layer(middleware::from_fn_with_state(csp, static_headers));

    let app = app.fallback_service(statics).with_state(Arc::clone(&state));
    if state.dev.is_some() {
        app.layer(middleware::from_fn_with_state(state, host_guard))
    } else {
        app
    }
}

fn method_not_allowed() -> Response {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", None);
    r.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    r
}

/// dev mode listens on loopback for a browser on the same machine: refuse requests whose `Host`
/// is not a loopback name, so a DNS-rebinding page cannot reach the admin routes or tokens.
async fn host_guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        let name = match host.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let ok = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip == st.local.ip());
        if !ok {
            return json_error(StatusCode::FORBIDDEN, "forbidden-host", None);
        }
    }
    next.run(req).await
}

/// Admin routes answer loopback peers only.
async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !is_loopback_peer(&peer) {
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            Some(json!({ "detail": "admin routes are loopback-only" })),
        );
    }
    next.run(req).await
}

fn add_cors(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
}

/// Origin allow-list + CORS (including preflights) for the API and admin routes.
async fn origin_guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let decision = st.origins.decide(req.headers());
    let mut resp = match &decision {
        OriginDecision::Denied => {
            tracing::debug!(path = req.uri().path(), "refused origin");
            json_error(
                StatusCode::FORBIDDEN,
                "forbidden-origin",
                Some(json!({ "detail": "origin not allowed" })),
            )
        }
        _ if req.method() == Method::OPTIONS => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            let allowed =
                allowed_request_headers(req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS));
            if let Ok(v) = HeaderValue::from_str(&allowed) {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            h.insert(header::CACHE_CONTROL, NO_STORE);
            r
        }
        _ => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let OriginDecision::Allowed(o) = &decision {
        add_cors(h, o);
    }
    resp
}

fn token_response(t: &CachedToken) -> Response {
    let mut body = json!({
        "token": t.token.expose(),
        "expiresIn": t.expires_in(Instant::now()),
    });
    if let Some(r) = &t.region {
        body["region"] = Value::String(r.clone());
    }
    if let Some(e) = &t.endpoint {
        body["endpoint"] = Value::String(e.clone());
    }
    json_response(StatusCode::OK, &body)
}

fn injected_response(plan: &FailPlan) -> Response {
    if let Some(body) = &plan.body {
        let mut r = Response::new(Body::from(body.clone()));
        let ct = plan.content_type.as_deref().unwrap_or("application/json");
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(ct).unwrap_or(crate::http::JSON),
        );
        h.insert(header::CACHE_CONTROL, NO_STORE);
        h.insert(header::PRAGMA, NO_CACHE);
        return r;
    }
    let status = StatusCode::from_u16(plan.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut extra = json!({ "detail": "injected by /admin/fail" });
    if let Some(s) = plan.retry_after {
        extra["retryAfter"] = json!(s);
    }
    let mut r = json_error(status, kind_for_status(plan.status), Some(extra));
    if let Some(s) = plan.retry_after {
        r = with_retry_after(r, s);
    }
    if status.is_redirection() {
        let loc = plan.location.as_deref().unwrap_or("/");
        if let Ok(v) = HeaderValue::from_str(loc) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    r
}

async fn token_handler(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    st.token_requests.fetch_add(1, Ordering::Relaxed);
    if let Some(rl) = &st.rate {
        if let Err(wait) = rl.check(peer.ip(), Instant::now()) {
            let secs = (wait.as_secs_f64().ceil() as u64).max(1);
            return with_retry_after(
                json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    Some(json!({ "retryAfter": secs })),
                ),
                secs,
            );
        }
    }
    if let Some((name, value)) = &st.require_header {
        if !headers
            .get_all(name)
            .iter()
            .any(|v| ct_eq(v.as_bytes(), value.as_bytes()))
        {
            return json_error(StatusCode::UNAUTHORIZED, "unauthorized", None);
        }
    }
    if let Some(dev) = &st.dev {
        let slow = dev.slow_ms.load(Ordering::Relaxed);
        if slow > 0 {
            tokio::time::sleep(Duration::from_millis(slow)).await;
        }
        if dev.in_outage() {
            return with_retry_after(
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    Some(json!({ "detail": "simulated outage", "retryAfter": 1 })),
                ),
                1,
            );
        }
        if let Some(plan) = dev.take_fail() {
            return injected_response(&plan);
        }
    }
    match st.cache.get().await {
        Ok(t) => {
            st.token_ok.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(fingerprint = %t.fingerprint, "token served");
            token_response(&t)
        }
        Err(e) => json_error(
            StatusCode::BAD_GATEWAY,
            "upstream",
            Some(json!({ "detail": e.detail })),
        ),
    }
}

/// Every static answer carries the CSP and friends; JS and wasm get exact content types.
async fn static_headers(State(csp): State<HeaderValue>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_ascii_lowercase();
    let mut resp = next.run(req).await;
    let ok = resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if ok {
        let ct = if path.ends_with(".wasm") {
            Some("application/wasm")
        } else if path.ends_with(".js") || path.ends_with(".mjs") {
            Some("text/javascript")
        } else {
            None
        };
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
    }
    resp
}

// ---------------------------------------------------------------- admin (dev mode, loopback only)

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(&format!("invalid JSON body: {e}"))))
}

fn dev(st: &AppState) -> &DevState {
    st.dev
        .as_ref()
        .expect("admin routes exist in dev mode only")
}

#[derive(Deserialize)]
struct Seconds {
    seconds: u64,
}

async fn admin_ttl(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let s: Seconds = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !(MIN_TTL..=MAX_TTL).contains(&s.seconds) {
        return bad_request(&format!("seconds must be between {MIN_TTL} and {MAX_TTL}"));
    }
    dev(&st).ttl.store(s.seconds, Ordering::Relaxed);
    st.cache.invalidate();
    tracing::info!(ttl = s.seconds, "admin: ttl changed, cached token dropped");
    json_response(StatusCode::OK, &json!({ "ok": true, "ttl": s.seconds }))
}

async fn admin_outage(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let s: Seconds = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let until = (s.seconds > 0).then(|| Instant::now() + Duration::from_secs(s.seconds));
    *dev(&st)
        .outage_until
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = until;
    tracing::info!(seconds = s.seconds, "admin: outage");
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "outageSeconds": s.seconds }),
    )
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

async fn admin_slow(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let s: Slow = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let ms = s.ms.min(600_000);
    dev(&st).slow_ms.store(ms, Ordering::Relaxed);
    tracing::info!(ms, "admin: slow");
    json_response(StatusCode::OK, &json!({ "ok": true, "ms": ms }))
}

async fn admin_fail(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let plan: FailPlan = match parse_body(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if StatusCode::from_u16(plan.status).is_err() || plan.status < 200 {
        return bad_request("status must be an HTTP status code 200..=599");
    }
    if let Some(ct) = &plan.content_type {
        if HeaderValue::from_str(ct).is_err() {
            return bad_request("contentType is not a header value");
        }
    }
    tracing::info!(
        status = plan.status,
        count = plan.count,
        "admin: fail injection"
    );
    let count = plan.count;
    *dev(&st).fail.lock().unwrap_or_else(|e| e.into_inner()) = (count > 0).then_some(plan);
    json_response(StatusCode::OK, &json!({ "ok": true, "count": count }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpeechBody {
    #[serde(default)]
    drop_after_ms: Option<u64>,
    #[serde(default)]
    reply_after_audio_frames: Option<u32>,
    #[serde(default)]
    end_turn: Option<bool>,
}

async fn admin_speech(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let s: SpeechBody = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let b = SpeechBehaviour {
        drop_after_ms: s.drop_after_ms,
        reply_after_audio_frames: s.reply_after_audio_frames.unwrap_or(3).max(1),
        end_turn: s.end_turn.unwrap_or(true),
    };
    *dev(&st).speech.lock().unwrap_or_else(|e| e.into_inner()) = b;
    tracing::info!(drop_after_ms = ?b.drop_after_ms, reply_after = b.reply_after_audio_frames, "admin: speech behaviour");
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "dropAfterMs": b.drop_after_ms, "replyAfterAudioFrames": b.reply_after_audio_frames, "endTurn": b.end_turn }),
    )
}

async fn admin_stats(State(st): State<Arc<AppState>>) -> Response {
    let d = dev(&st);
    let conns: Vec<Value> = d
        .connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|c| c.to_json())
        .collect();
    let speech = d.speech_behaviour();
    let fail_remaining = d
        .fail
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|p| p.count)
        .unwrap_or(0);
    json_response(
        StatusCode::OK,
        &json!({
            "mode": st.mode,
            "tokenRequests": st.token_requests.load(Ordering::Relaxed),
            "tokenResponsesOk": st.token_ok.load(Ordering::Relaxed),
            "upstreamRequests": st.cache.upstream_requests(),
            "speechConnections": conns,
            "ttl": d.ttl.load(Ordering::Relaxed),
            "outage": d.in_outage(),
            "slowMs": d.slow_ms.load(Ordering::Relaxed),
            "failRemaining": fail_remaining,
            "speech": { "dropAfterMs": speech.drop_after_ms, "replyAfterAudioFrames": speech.reply_after_audio_frames, "endTurn": speech.end_turn },
        }),
    )
}

async fn admin_reset(State(st): State<Arc<AppState>>) -> Response {
    let d = dev(&st);
    st.token_requests.store(0, Ordering::Relaxed);
    st.token_ok.store(0, Ordering::Relaxed);
    st.cache.reset_counter();
    st.cache.invalidate();
    d.connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    *d.outage_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    d.slow_ms.store(0, Ordering::Relaxed);
    *d.fail.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *d.speech.lock().unwrap_or_else(|e| e.into_inner()) = SpeechBehaviour::default();
    if let Some(rl) = &st.rate {
        rl.reset();
    }
    tracing::info!("admin: reset");
    json_response(StatusCode::OK, &json!({ "ok": true }))
}

impl IntoResponse for crate::upstream::UpstreamError {
    fn into_response(self) -> Response {
        json_error(
            StatusCode::BAD_GATEWAY,
            "upstream",
            Some(json!({ "detail": self.detail })),
        )
    }
}
