//! dev mode's test-control routes (`/admin/*`): they take only the dev state.
//!
//! Guarded in [`crate::guards::admin_guard`]: loopback peers only, never through a proxy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{MAX_TTL, MIN_TTL};
use crate::dev::{DevState, FailPlan};
use crate::http::{bad_request, json_response};
use crate::speech::{SpeechBehaviour, MAX_DROP_AFTER_MS};

/// Longest simulated outage (`/admin/outage`), in seconds: a day, longer than any token lives
/// ([`MAX_TTL`]), so every scenario fits. The bound keeps `now + seconds` far from where
/// `Instant + Duration` overflows, which panics (and the release profile's `panic = "abort"`
/// turns a panic into the end of the broker).
pub const MAX_OUTAGE_SECS: u64 = 86_400;

/// Largest `/admin/slow` delay, in ms (README: "at most 600000"): ten minutes, longer than any
/// client waits for an answer; larger values are clamped to it.
pub const MAX_SLOW_MS: u64 = 600_000;

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(&format!("invalid JSON body: {e}"))))
}

#[derive(Deserialize)]
struct Seconds {
    seconds: u64,
}

/// `POST /admin/ttl` (see README.md).
pub async fn admin_ttl(State(d): State<Arc<DevState>>, body: Bytes) -> Response {
    let s: Seconds = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !(MIN_TTL..=MAX_TTL).contains(&s.seconds) {
        return bad_request(&format!("seconds must be between {MIN_TTL} and {MAX_TTL}"));
    }
    d.ttl.store(s.seconds, Ordering::Relaxed);
    if let Some(relay) = &d.relay {
        relay.set_ticket_ttl(s.seconds);
    }
    d.cache.invalidate();
    tracing::info!(ttl = s.seconds, "admin: ttl changed, cached token dropped");
    json_response(StatusCode::OK, &json!({ "ok": true, "ttl": s.seconds }))
}

/// `POST /admin/outage` (see README.md).
pub async fn admin_outage(State(d): State<Arc<DevState>>, body: Bytes) -> Response {
    let s: Seconds = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if s.seconds > MAX_OUTAGE_SECS {
        return bad_request(&format!("seconds must be between 0 and {MAX_OUTAGE_SECS}"));
    }
    let until = match s.seconds {
        0 => None,
        n => match Instant::now().checked_add(Duration::from_secs(n)) {
            Some(t) => Some(t),
            None => return bad_request("seconds reach past this clock's range"),
        },
    };
    *d.outage_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
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

/// `POST /admin/slow` (see README.md).
pub async fn admin_slow(State(d): State<Arc<DevState>>, body: Bytes) -> Response {
    let s: Slow = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let ms = s.ms.min(MAX_SLOW_MS);
    d.slow_ms.store(ms, Ordering::Relaxed);
    tracing::info!(ms, "admin: slow");
    json_response(StatusCode::OK, &json!({ "ok": true, "ms": ms }))
}

/// `POST /admin/fail` (see README.md).
pub async fn admin_fail(State(d): State<Arc<DevState>>, body: Bytes) -> Response {
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
    *d.fail.lock().unwrap_or_else(|e| e.into_inner()) = (count > 0).then_some(plan);
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
    #[serde(default)]
    close_code: Option<u16>,
    #[serde(default)]
    refuse_status: Option<u16>,
}

/// `POST /admin/speech` (see README.md).
pub async fn admin_speech(State(d): State<Arc<DevState>>, body: Bytes) -> Response {
    let s: SpeechBody = match parse_body(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if s.drop_after_ms.is_some_and(|ms| ms > MAX_DROP_AFTER_MS) {
        return bad_request(&format!(
            "dropAfterMs must be between 0 and {MAX_DROP_AFTER_MS}"
        ));
    }
    let b = SpeechBehaviour {
        drop_after_ms: s.drop_after_ms,
        reply_after_audio_frames: s.reply_after_audio_frames.unwrap_or(3).max(1),
        end_turn: s.end_turn.unwrap_or(true),
        // a close code a server may send (RFC 6455 §7.4): 1000, 1001, 1003, 1007–1014, 3000–4999
        close_code: s
            .close_code
            .filter(|c| matches!(c, 1000 | 1001 | 1003 | 1007..=1014 | 3000..=4999))
            .unwrap_or(1000),
        refuse_status: s.refuse_status.filter(|c| (400..=599).contains(c)),
    };
    d.speech.set_behaviour(b);
    tracing::info!(drop_after_ms = ?b.drop_after_ms, close_code = b.close_code, refuse_status = ?b.refuse_status,
        reply_after = b.reply_after_audio_frames, "admin: speech behaviour");
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "dropAfterMs": b.drop_after_ms, "closeCode": b.close_code, "refuseStatus": b.refuse_status,
            "replyAfterAudioFrames": b.reply_after_audio_frames, "endTurn": b.end_turn }),
    )
}

/// `GET /admin/stats` (see README.md).
pub async fn admin_stats(State(d): State<Arc<DevState>>) -> Response {
    let conns: Vec<Value> = d.speech.connections_json();
    let speech = d.speech.behaviour();
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
            "mode": "dev",
            "tokenRequests": d.counters.token_requests.load(Ordering::Relaxed),
            "tokenResponsesOk": d.counters.token_ok.load(Ordering::Relaxed),
            "upstreamRequests": d.cache.upstream_requests(),
            "speechConnections": conns,
            "ttl": d.ttl.load(Ordering::Relaxed),
            "outage": d.in_outage(),
            "slowMs": d.slow_ms.load(Ordering::Relaxed),
            "failRemaining": fail_remaining,
            "speech": { "dropAfterMs": speech.drop_after_ms, "closeCode": speech.close_code, "refuseStatus": speech.refuse_status,
                "replyAfterAudioFrames": speech.reply_after_audio_frames, "endTurn": speech.end_turn },
        }),
    )
}

/// `POST /admin/reset` (see README.md).
pub async fn admin_reset(State(d): State<Arc<DevState>>) -> Response {
    d.counters.token_requests.store(0, Ordering::Relaxed);
    d.counters.token_ok.store(0, Ordering::Relaxed);
    d.cache.reset_counter();
    d.cache.invalidate();
    d.speech.reset();
    *d.outage_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    d.slow_ms.store(0, Ordering::Relaxed);
    *d.fail.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if let Some(rl) = &d.rate {
        rl.reset();
    }
    tracing::info!("admin: reset");
    json_response(StatusCode::OK, &json!({ "ok": true }))
}
