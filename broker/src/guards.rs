//! Request guards (middleware): the `Host` allow-list, the admin routes' loopback-and-unproxied
//! rule, the origin allow-list with CORS, and the per-request deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::auth::{bearer, Authenticator};
use crate::http::{json_error, with_retry_after, NO_STORE};
use crate::origin::{allowed_request_headers, is_loopback_peer, OriginDecision};
use crate::presented::presented_token;
use crate::relay::{refuse, upstream_path, TICKET_PREFIX};
use crate::state::AppState;
use crate::upstream::now_unix_ms;

/// Paths a load balancer probes by IP or internal name: they answer nothing secret, so the
/// `Host` allow-list does not apply to them.
pub const PROBE_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Refuses requests whose `Host` is not allow-listed (DNS rebinding: a page on
/// `rebind.attacker.example` resolving to the broker's address would otherwise be same-origin
/// with it and read tokens). Every mode; dev adds its loopback names.
pub async fn host_guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !PROBE_PATHS.contains(&req.uri().path()) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !st.hosts.allows(host) {
            tracing::debug!(path = req.uri().path(), "refused Host");
            return json_error(StatusCode::FORBIDDEN, "forbidden-host", None);
        }
    }
    next.run(req).await
}

/// Whether a request came through a proxy: any `Forwarded` or `X-Forwarded-*` header.
pub fn is_proxied(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == "forwarded" || k.starts_with("x-forwarded-")
    })
}

/// Admin routes (dev mode only) answer loopback peers that did not come through a proxy: a
/// reverse proxy on the same machine would otherwise make every internet client "loopback".
pub async fn admin_guard(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !is_loopback_peer(&peer) || is_proxied(req.headers()) {
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            Some(json!({ "detail": "admin routes answer direct loopback requests only" })),
        );
    }
    next.run(req).await
}

/// `Retry-After` of the deadline's 503, in seconds: the shortest the header can say; an
/// overloaded broker is asked again after the client's own backoff at the earliest.
pub const DEADLINE_RETRY_AFTER_S: u64 = 1;

/// Bounds the time from request to answer (`--request-timeout`). WebSocket sessions run after
/// their upgrade answer and are not affected. The 503 replaces whatever the inner layers would
/// have answered, [`origin_guard`]'s CORS headers included: they are added here again for an
/// allowed origin, so a cross-origin page sees an `http` error with its status (and retries it
/// as one), not an opaque network failure.
pub async fn deadline(
    State((limit, st)): State<(Duration, Arc<AppState>)>,
    req: Request,
    next: Next,
) -> Response {
    // Kept for the rare timeout (a shared-buffer clone); the origin is judged only then.
    let origin = req.headers().get(header::ORIGIN).cloned();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            // Like every 503 of the contract, with a `Retry-After`: the client waits at least
            // that long (its own backoff when longer).
            let mut resp = with_retry_after(
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    Some(json!({
                        "detail": "the request took too long",
                        "retryAfter": DEADLINE_RETRY_AFTER_S,
                    })),
                ),
                DEADLINE_RETRY_AFTER_S,
            );
            let h = resp.headers_mut();
            h.append(header::VARY, HeaderValue::from_static("Origin"));
            if let Some(origin) = origin {
                let only = HeaderMap::from_iter([(header::ORIGIN, origin)]);
                if let OriginDecision::Allowed(o) = st.origins.decide(&only) {
                    add_cors(h, &o);
                }
            }
            resp
        }
    }
}

/// Response headers a cross-origin page may read besides the safelisted ones: `Date` (the
/// browser client judges a JWT's absolute `exp` against the broker's clock, docs/ARCHITECTURE.md
/// "Token age") and `Retry-After` (429/503).
pub const EXPOSED_HEADERS: HeaderValue = HeaderValue::from_static("date, retry-after");

fn add_cors(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS);
    }
}

/// Origin allow-list + CORS (including preflights) for the API and admin routes.
pub async fn origin_guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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

/// `/relay/*` with `--auth entra`: when the upgrade also carries the app user's own token
/// (`Authorization: Bearer`, with the ticket in the query as the Speech SDK sends it) — a native
/// client or an authenticating proxy can send one, a browser's SDK cannot — that user must be the
/// one the ticket was minted for: another user → 403 `wrong-user`, an invalid token → 401, before
/// the upstream is contacted. Without one, the ticket alone decides (docs/ARCHITECTURE.md, "The
/// relay's trust rules"); a ticket that does not verify is left to the relay to refuse.
pub async fn relay_user_guard(
    State(st): State<Arc<AppState>>,
    rest: Result<Path<String>, PathRejection>,
    req: Request,
    next: Next,
) -> Response {
    let (Some(relay), Authenticator::Entra(_)) = (&st.relay, &st.auth) else {
        return next.run(req).await;
    };
    // The relay's own refusals come first, before any ticket or user token is read: a method
    // other than GET (405) and a path that is no Speech SDK path (404), answered by `relay_ws`.
    let sdk_path = rest
        .ok()
        .and_then(|Path(rest)| upstream_path(&rest, req.uri().query()));
    if req.method() != Method::GET || sdk_path.is_none() {
        return next.run(req).await;
    }
    let headers = req.headers();
    // The ticket: the query's `Authorization` (the SDK), else the header (a native client).
    let Some(ticket) = presented_token(req.uri().query(), headers) else {
        return next.run(req).await;
    };
    // A user token only if the header does not carry a ticket itself (read as the relay reads
    // it: `Bearer` stripped, the SDK's `aad#<resource>#` prefix dropped).
    let header_is_ticket =
        presented_token(None, headers).is_none_or(|t| t == ticket || t.starts_with(TICKET_PREFIX));
    if bearer(headers).is_none() || header_is_ticket {
        return next.run(req).await;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let Ok(ticket_subject) = relay.signer.verify(&ticket, origin, host, now_unix_ms()) else {
        return next.run(req).await;
    };
    match st.auth.authenticate(headers).await {
        Ok(identity) if identity.subject() == ticket_subject => next.run(req).await,
        Ok(_) => {
            tracing::info!(reason = "wrong-user", "relay: ticket refused");
            refuse(relay, StatusCode::FORBIDDEN, "forbidden", "wrong-user")
        }
        Err(_) => {
            tracing::info!(reason = "user-token", "relay: ticket refused");
            refuse(
                relay,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid user token",
            )
        }
    }
}
