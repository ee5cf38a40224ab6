//! `GET`/`POST /api/speech-token`: the broker contract.
//!
//! Order of checks: origin (route layer) → authentication → rate limit (per user when
//! authenticated, per client IP otherwise; refused authentications in their own per-IP bucket)
//! → dev knobs (slow, outage, injected failure) → token.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::cache::CachedToken;
use crate::dev::FailPlan;
use crate::http::{
    json_error, json_response, kind_for_status, with_retry_after, NO_CACHE, NO_STORE,
};
use crate::ratelimit::{retry_after_secs, RateKey};
use crate::state::AppState;

fn rate_limited(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    with_retry_after(
        json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            Some(json!({ "retryAfter": secs })),
        ),
        secs,
    )
}

/// The token route's handler.
pub async fn token_handler(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    st.counters.token_requests.fetch_add(1, Ordering::Relaxed);
    let client_ip = st.proxies.client_ip(&peer, &headers);
    let identity = match st.auth.authenticate(&headers).await {
        Ok(id) => id,
        Err(refusal) => {
            if let Some(rl) = &st.rate {
                if let Err(wait) = rl.check(RateKey::Refused(client_ip), Instant::now()) {
                    return rate_limited(wait);
                }
            }
            tracing::debug!(client = %client_ip, ?refusal, "token request not authenticated");
            return refusal.into_response();
        }
    };
    if let Some(rl) = &st.rate {
        let key = match &identity {
            Identity::User(u) => RateKey::User {
                tid: u.tid.clone(),
                oid: u.oid.clone(),
            },
            Identity::Anonymous | Identity::SharedHeader => RateKey::Ip(client_ip),
        };
        if let Err(wait) = rl.check(key, Instant::now()) {
            return rate_limited(wait);
        }
    }
    if let Some(dev) = &st.dev {
        let slow = dev.slow_ms();
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
    // dev only: `?relay=0` answers a plain dev token, so the demo can compare both (its switch)
    let relay_off = st.dev.is_some() && query.as_deref() == Some("relay=0");
    if let Some(relay) = st.relay.as_ref().filter(|_| !relay_off) {
        let subject = crate::relay::ticket_subject(&identity, client_ip);
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (ticket, expires_in) = relay.ticket_for(&subject, origin);
        st.counters.token_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "audit", user = %subject, client = %client_ip,
            fingerprint = %crate::secret::fingerprint(&ticket), "relay ticket issued");
        return json_response(
            StatusCode::OK,
            &json!({
                "token": ticket,
                "expiresIn": expires_in,
                "endpoint": crate::relay::relay_endpoint(host, st.local, st.dev.is_some()),
            }),
        );
    }
    match st.cache.get().await {
        Ok(t) => {
            st.counters.token_ok.fetch_add(1, Ordering::Relaxed);
            match &identity {
                Identity::User(u) => tracing::info!(target: "audit", tid = %u.tid, oid = %u.oid,
                    client = %client_ip, fingerprint = %t.fingerprint, "token issued"),
                Identity::SharedHeader => tracing::info!(target: "audit", auth = "header",
                    client = %client_ip, fingerprint = %t.fingerprint, "token issued"),
                Identity::Anonymous => tracing::debug!(target: "audit", client = %client_ip,
                    fingerprint = %t.fingerprint, "token issued"),
            }
            token_response(&t)
        }
        Err(e) => json_error(
            StatusCode::BAD_GATEWAY,
            "upstream",
            Some(json!({ "detail": e.detail })),
        ),
    }
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
