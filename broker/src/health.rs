//! `/healthz` (the process answers) and `/readyz` (a token is obtainable: the upstream is
//! reachable and accepts our credential). Both `no-store`; neither shows a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::http::{json_error, json_response};
use crate::state::AppState;

/// `GET /healthz`: `200 ok`.
pub async fn healthz() -> Response {
    let mut r = json_response(StatusCode::OK, &json!({ "status": "ok" }));
    *r.body_mut() = axum::body::Body::from("ok");
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET /readyz`: 200 when the token cache has (or can get) a token, else 503 with the
/// upstream's secret-free detail. Uses the cache, so probes cost no extra upstream calls.
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    match st.cache.get().await {
        Ok(_) => json_response(StatusCode::OK, &json!({ "ready": true, "mode": st.mode })),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(json!({ "ready": false, "detail": e.detail })),
        ),
    }
}
