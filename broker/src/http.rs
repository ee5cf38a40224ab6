//! Response helpers: every answer of the broker API is JSON and uncacheable (405s included:
//! [`json_405`]).

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};

pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
pub const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, JSON);
    h.insert(header::CACHE_CONTROL, NO_STORE);
    h.insert(header::PRAGMA, NO_CACHE);
    r
}

/// `{"error": kind, ...extra}` with `Cache-Control: no-store`.
pub fn json_error(status: StatusCode, kind: &str, extra: Option<Value>) -> Response<Body> {
    let mut m = Map::new();
    m.insert("error".into(), Value::String(kind.into()));
    if let Some(Value::Object(e)) = extra {
        for (k, v) in e {
            m.insert(k, v);
        }
    }
    json_response(status, &Value::Object(m))
}

pub fn with_retry_after(mut r: Response<Body>, secs: u64) -> Response<Body> {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// `405 method-not-allowed` as JSON with `no-store`, and `Allow` when given.
pub fn method_not_allowed(allow: Option<HeaderValue>) -> Response<Body> {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", None);
    if let Some(a) = allow {
        r.headers_mut().insert(header::ALLOW, a);
    }
    r
}

/// Router-wide (`axum::middleware::map_response`): a 405 that is not JSON yet — axum's method
/// routers (empty body, `Allow` from the route's methods), `ServeDir` (empty body, `Allow:
/// GET,HEAD`) — becomes [`method_not_allowed`], keeping its other headers (`Allow`, CORS,
/// `Vary`, static security headers). So every 405, of every route present or future, is JSON and
/// uncacheable.
pub async fn json_405(resp: Response<Body>) -> Response<Body> {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED
        || resp.headers().get(header::CONTENT_TYPE) == Some(&JSON)
    {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let mut r = method_not_allowed(None);
    let h = r.headers_mut();
    for (name, value) in &parts.headers {
        if !matches!(
            *name,
            header::CONTENT_TYPE
                | header::CONTENT_LENGTH
                | header::TRANSFER_ENCODING
                | header::CACHE_CONTROL
                | header::PRAGMA
        ) {
            h.append(name, value.clone());
        }
    }
    r
}

/// A WebSocket route's refused upgrade as a JSON error (axum's rejection is plain text): another
/// method → 405 with `Allow: GET`; a GET that is no WebSocket upgrade → 400 (426 when the
/// connection cannot be upgraded). The detail is axum's fixed text.
pub fn ws_rejection(rejection: WebSocketUpgradeRejection) -> Response<Body> {
    let status = rejection.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return method_not_allowed(Some(HeaderValue::from_static("GET")));
    }
    json_error(
        status,
        kind_for_status(status.as_u16()),
        Some(json!({ "detail": rejection.body_text() })),
    )
}

pub fn bad_request(detail: &str) -> Response<Body> {
    json_error(
        StatusCode::BAD_REQUEST,
        "bad-request",
        Some(json!({ "detail": detail })),
    )
}

pub fn kind_for_status(status: u16) -> &'static str {
    match status {
        300..=399 => "redirect",
        400 => "bad-request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "timeout",
        429 => "rate-limited",
        500 => "internal",
        502 => "upstream",
        503 => "unavailable",
        504 => "timeout",
        _ => "error",
    }
}

/// Constant-time byte comparison (for the app-auth header hook).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
