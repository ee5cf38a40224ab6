//! dev mode: a fake Azure Speech WebSocket service that speaks enough of the SDK's framing to make
//! recognition (`recognizeOnceAsync`, continuous), translation (`TranslationRecognizer`) and
//! synthesis (`SpeechSynthesizer`) succeed, and that accepts only valid, unexpired tokens signed by
//! this process (rejecting others with HTTP 401 before the upgrade, as the real service does).
//!
//! The service is chosen by the path the SDK 1.52 generates (see [`Service::of`]): synthesis on
//! `…/cognitiveservices/websocket/v1`, translation on `/speech/translation/cognitiveservices/v1` or
//! on `/stt/speech/universal/v2` with a `to` query parameter, recognition otherwise. The replies
//! follow the SDK's own parsers (`TranslationServiceRecognizer`, `SynthesisAdapterBase`,
//! `SynthesisTurn`): see [`translation_reply`] and [`synthesis_reply`].
//!
//! Bounded: frames and messages of at most [`MAX_FRAME_BYTES`] (larger ones close the connection
//! with 1009), an idle timeout (close 1000), per-connection turn state for at most
//! [`MAX_TRACKED_TURNS`] turns, and a close frame (1001) to every open connection on shutdown.
//! It depends on nothing else in the broker: the dev state hands it a [`SpeechService`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::devjwt::{DevSigner, Verdict};
use crate::http::json_error;
use crate::presented::presented_token;
use crate::relay::TICKET_PREFIX;
use crate::secret::fingerprint;
use crate::shutdown::{ShutdownWatch, CLOSE_HANDSHAKE_WAIT};
use crate::upstream::now_unix;

/// Largest WebSocket frame or message accepted. The SDK sends audio in chunks of a few KB and
/// JSON configuration messages of a few KB; 1 MiB leaves room for large phrase lists.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Read and write buffer per connection (tungstenite's default is 128 KiB each; audio frames are
/// ~3 KiB).
pub const WS_BUFFER_BYTES: usize = 16 * 1024;
/// Turns (`X-RequestId`s) whose audio frames one connection tracks; older ones are forgotten.
/// A real session has one turn at a time; this bounds what a misbehaving client can make us keep.
pub const MAX_TRACKED_TURNS: usize = 16;
/// Connection attempts kept for `/admin/stats`.
pub const MAX_RECORDED_CONNECTIONS: usize = 10_000;
/// Latest `dropAfterMs` of `/admin/speech`: a day, as long as a relayed session may last
/// (`--relay-max-duration` ≤ 86400 s). The bound keeps the drop deadline far from where
/// `Instant + Duration` overflows, which panics (an abort of the broker in the release profile).
pub const MAX_DROP_AFTER_MS: u64 = 86_400_000;
/// Close code sent on shutdown ("going away", RFC 6455 §7.4.1).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for an oversized message (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The fake service: who signs the accepted tokens, its scripted behaviour, the connection log.
pub struct SpeechService {
    signer: Arc<DevSigner>,
    behaviour: Mutex<SpeechBehaviour>,
    connections: Mutex<VecDeque<Arc<SpeechConn>>>,
    idle_timeout: Duration,
    shutdown: ShutdownWatch,
}

impl SpeechService {
    /// `shutdown` says when to close every connection with 1001, and keeps the process up while
    /// they close.
    pub fn new(signer: Arc<DevSigner>, idle_timeout: Duration, shutdown: ShutdownWatch) -> Self {
        SpeechService {
            signer,
            behaviour: Mutex::new(SpeechBehaviour::default()),
            connections: Mutex::new(VecDeque::new()),
            idle_timeout,
            shutdown,
        }
    }
    /// The behaviour for new connections.
    pub fn behaviour(&self) -> SpeechBehaviour {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Sets the behaviour for new connections.
    pub fn set_behaviour(&self, b: SpeechBehaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }
    fn record(&self, c: Arc<SpeechConn>) {
        let mut v = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= MAX_RECORDED_CONNECTIONS {
            v.pop_front();
        }
        v.push_back(c);
    }
    /// The connection log as JSON.
    pub fn connections_json(&self) -> Vec<serde_json::Value> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.to_json())
            .collect()
    }
    /// Clears the log and restores the default behaviour.
    pub fn reset(&self) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.set_behaviour(SpeechBehaviour::default());
    }
}

/// Audio frames counted per turn, for the last [`MAX_TRACKED_TURNS`] turns.
#[derive(Debug, Default)]
pub struct TurnTracker {
    turns: VecDeque<(String, u32, bool)>,
}

impl TurnTracker {
    /// Counts one audio frame of turn `id`; true exactly once, when the turn reaches `k` frames.
    pub fn audio_frame(&mut self, id: &str, k: u32) -> bool {
        let i = match self.turns.iter().position(|(t, _, _)| t == id) {
            Some(i) => i,
            None => {
                if self.turns.len() >= MAX_TRACKED_TURNS {
                    self.turns.pop_front();
                }
                self.turns.push_back((id.to_string(), 0, false));
                self.turns.len() - 1
            }
        };
        let (_, n, answered) = &mut self.turns[i];
        *n = n.saturating_add(1);
        if *n >= k && !*answered {
            *answered = true;
            return true;
        }
        false
    }
    /// Turns currently tracked.
    pub fn len(&self) -> usize {
        self.turns.len()
    }
    /// Whether no turn is tracked.
    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechBehaviour {
    /// Close every connection this long after it opened (a server-initiated reconnect).
    pub drop_after_ms: Option<u64>,
    /// The close code of that close: 1000 (default) is a normal end the SDK reconnects after;
    /// e.g. 1011 is a service failure the SDK reports as an error.
    pub close_code: u16,
    /// Answer valid upgrades with this HTTP status instead of upgrading (a service refusing a
    /// connection), e.g. 503.
    pub refuse_status: Option<u16>,
    pub reply_after_audio_frames: u32,
    /// Answer with all six frames, ending the turn (default). `false` answers only `turn.start`,
    /// `speech.startDetected`, `speech.phrase` and leaves the turn open (continuous recognition).
    pub end_turn: bool,
}

impl Default for SpeechBehaviour {
    fn default() -> Self {
        SpeechBehaviour {
            drop_after_ms: None,
            close_code: 1000,
            refuse_status: None,
            reply_after_audio_frames: 3,
            end_turn: true,
        }
    }
}

/// Which service a connection asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Recognition,
    Translation,
    Synthesis,
}

impl Service {
    /// The service the SDK means by this path and query (SDK 1.52's connection factories):
    /// `SpeechSynthesisConnectionFactory` connects to `/tts/cognitiveservices/websocket/v1` (the
    /// regional tts host also serves `/cognitiveservices/websocket/v1`);
    /// `TranslationConnectionFactory` to `/stt/speech/universal/v2` (or
    /// `/speech/translation/cognitiveservices/v1` on the s2s host with `SPEECH-ForceV1Endpoint`),
    /// always with `from` and `to` query parameters;
    /// `SpeechConnectionFactory` to `/speech/recognition/{interactive,conversation,dictation}/
    /// cognitiveservices/v1` or `/stt/speech/universal/v2` without `to`.
    pub fn of(path: &str, query: Option<&str>) -> Self {
        let p = path.to_ascii_lowercase();
        let has_to = query.is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k.eq_ignore_ascii_case("to"))
        });
        if p.ends_with("/cognitiveservices/websocket/v1") {
            Service::Synthesis
        } else if p.starts_with("/speech/translation/")
            || (p.starts_with("/stt/speech/universal/") && has_to)
        {
            Service::Translation
        } else {
            Service::Recognition
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Recognition => "recognition",
            Service::Translation => "translation",
            Service::Synthesis => "synthesis",
        }
    }
}

/// Where a connection carried its credential: the `Authorization` query parameter (what the
/// browser SDK does), the `Authorization` header (what the relay does), or nowhere.
pub fn credential_form(query: Option<&str>, headers: &HeaderMap) -> &'static str {
    let in_query = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    });
    if in_query {
        "query"
    } else if headers.contains_key(axum::http::header::AUTHORIZATION) {
        "header"
    } else {
        "none"
    }
}

/// Whether a relay ticket (one beginning with [`TICKET_PREFIX`]) appears anywhere in the query or
/// the headers.
pub fn carries_ticket(query: Option<&str>, headers: &HeaderMap) -> bool {
    query.is_some_and(|q| q.contains(TICKET_PREFIX))
        || headers
            .values()
            .any(|v| v.to_str().is_ok_and(|s| s.contains(TICKET_PREFIX)))
}

/// Most target languages a translation connection answers (the `to` list), each at most
/// 16 characters of `[A-Za-z0-9-]`.
pub const MAX_TARGET_LANGUAGES: usize = 8;

/// The `to` query parameter as a list of language tags (comma-separated, as the SDK joins them).
pub fn target_languages(query: Option<&str>) -> Vec<String> {
    let Some(q) = query else { return Vec::new() };
    url::form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("to"))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|l| {
            !l.is_empty()
                && l.len() <= 16
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .take(MAX_TARGET_LANGUAGES)
        .collect()
}

/// Longest path kept in the connection log.
const MAX_LOGGED_PATH: usize = 200;

/// One connection attempt, as reported by `/admin/stats`.
#[derive(Debug)]
pub struct SpeechConn {
    pub at_ms: u64,
    pub verdict: &'static str,
    pub jti: Option<String>,
    /// Turns answered (recognized or translated phrases, synthesized texts).
    pub phrases: AtomicU64,
    /// The request path (at most [`MAX_LOGGED_PATH`] characters).
    pub path: String,
    pub service: Service,
    /// [`credential_form`].
    pub credential: &'static str,
    /// [`carries_ticket`]: a relay must never pass its ticket on.
    pub ticket: bool,
    /// Translation: the target languages asked for.
    pub to: Vec<String>,
    /// The HTTP status answered: 101 (upgraded), 401, or the `refuseStatus` knob's.
    pub status: u16,
}

impl SpeechConn {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "at": self.at_ms,
            "verdict": self.verdict,
            "jti": self.jti,
            "phrases": self.phrases.load(Ordering::Relaxed),
            "path": self.path,
            "service": self.service.as_str(),
            "credential": self.credential,
            "ticket": self.ticket,
            "to": self.to,
            "status": self.status,
        })
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Header lines of an SDK frame (`Name:value`), case-insensitive lookup.
#[derive(Debug, Default)]
pub struct FrameHeaders(Vec<(String, String)>);

impl FrameHeaders {
    pub fn parse(text: &str) -> Self {
        FrameHeaders(
            text.split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Text frame: headers, blank line, body.
pub fn parse_text_frame(s: &str) -> (FrameHeaders, &str) {
    match s.split_once("\r\n\r\n") {
        Some((h, b)) => (FrameHeaders::parse(h), b),
        None => (FrameHeaders::parse(s), ""),
    }
}

/// Binary frame: u16 big-endian header length, header text, audio bytes.
pub fn parse_binary_frame(b: &[u8]) -> Option<(FrameHeaders, &[u8])> {
    if b.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let head = b.get(2..2 + n)?;
    let text = std::str::from_utf8(head).ok()?;
    Some((FrameHeaders::parse(text), &b[2 + n..]))
}

pub fn reply_frame(request_id: &str, path: &str, body: &str) -> String {
    format!("X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n{body}")
}

/// The canned answer to one turn (see [`SpeechBehaviour::end_turn`]).
pub fn turn_reply(request_id: &str, end_turn: bool) -> Vec<String> {
    [
        ("turn.start", r#"{"context":{"serviceTag":"fake"}}"#),
        ("speech.startDetected", r#"{"Offset":0}"#),
        ("speech.hypothesis", r#"{"Text":"hello","Offset":0,"Duration":5000000}"#),
        ("speech.phrase", r#"{"RecognitionStatus":"Success","DisplayText":"Hello world.","Offset":0,"Duration":10000000}"#),
        ("speech.endDetected", r#"{"Offset":10000000}"#),
        ("turn.end", "{}"),
    ]
    .iter()
    .filter(|(p, _)| end_turn || matches!(*p, "turn.start" | "speech.startDetected" | "speech.phrase"))
    .map(|(p, b)| reply_frame(request_id, p, b))
    .collect()
}

/// A canned translation of "Hello world." into `lang`.
fn translate(lang: &str) -> String {
    let base = lang.split('-').next().unwrap_or(lang).to_ascii_lowercase();
    match base.as_str() {
        "de" => "Hallo Welt.".into(),
        "fr" => "Bonjour le monde.".into(),
        "es" => "Hola mundo.".into(),
        "en" => "Hello world.".into(),
        _ => format!("[{lang}] Hello world."),
    }
}

/// The canned answer to one translation turn, as `TranslationServiceRecognizer` reads it:
/// `turn.start`, `speech.startDetected`, `translation.hypothesis`, `translation.phrase`
/// (`{RecognitionStatus, Text, Offset, Duration, Translation: {TranslationStatus, Translations:
/// [{Language, Text}]}}`), `speech.endDetected`, `turn.end`; without `end_turn` only `turn.start`,
/// `speech.startDetected` and `translation.phrase` (continuous translation). No target language:
/// `TranslationStatus: "Error"` with a `FailureReason`.
pub fn translation_reply(request_id: &str, targets: &[String], end_turn: bool) -> Vec<String> {
    let translations = |text: &dyn Fn(&str) -> String| -> serde_json::Value {
        if targets.is_empty() {
            json!({ "TranslationStatus": "Error", "FailureReason": "no target language (to)", "Translations": [] })
        } else {
            json!({
                "TranslationStatus": "Success",
                "Translations": targets.iter().map(|l| json!({ "Language": l, "Text": text(l) })).collect::<Vec<_>>(),
            })
        }
    };
    let hypothesis = json!({
        "Text": "hello", "Offset": 0, "Duration": 5_000_000,
        "Translation": translations(&|l: &str| translate(l).split(' ').next().unwrap_or("").to_lowercase()),
    });
    let phrase = json!({
        "RecognitionStatus": "Success", "Text": "Hello world.", "DisplayText": "Hello world.",
        "Offset": 0, "Duration": 10_000_000,
        "Translation": translations(&|l: &str| translate(l)),
    });
    let frames = [
        (
            "turn.start",
            r#"{"context":{"serviceTag":"fake"}}"#.to_string(),
        ),
        ("speech.startDetected", r#"{"Offset":0}"#.to_string()),
        ("translation.hypothesis", hypothesis.to_string()),
        ("translation.phrase", phrase.to_string()),
        ("speech.endDetected", r#"{"Offset":10000000}"#.to_string()),
        ("turn.end", "{}".to_string()),
    ];
    frames
        .iter()
        .filter(|(p, _)| {
            end_turn
                || matches!(
                    *p,
                    "turn.start" | "speech.startDetected" | "translation.phrase"
                )
        })
        .map(|(p, b)| reply_frame(request_id, p, b))
        .collect()
}

/// Bytes of synthesized "audio" per turn, sent in [`SYNTHESIS_CHUNK_BYTES`] frames (the real
/// service streams a few KB per frame).
pub const SYNTHESIS_AUDIO_BYTES: usize = 16_000;
/// Audio bytes per binary frame.
pub const SYNTHESIS_CHUNK_BYTES: usize = 4_000;

/// A binary service frame: u16 big-endian header length, header lines, body.
pub fn binary_frame(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(2 + headers.len() + body.len());
    f.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    f.extend_from_slice(headers.as_bytes());
    f.extend_from_slice(body);
    f
}

/// The canned answer to one `ssml` message, as `SynthesisAdapterBase.receiveMessage` reads it:
/// `turn.start`; `response` naming the audio stream (`{"audio":{"streamId"}}`: the SDK keeps
/// only `audio` frames whose `X-StreamId` header matches, and stops reading without it); binary
/// `audio` frames (`Path:audio`, `X-RequestId`, `X-StreamId`, the bytes); `audio.metadata` with
/// the `SessionEnd` offset; `turn.end` (the SDK then resolves `SynthesizingAudioCompleted` with
/// every byte received). The bytes are a fixed pattern, not a decodable stream.
pub fn synthesis_reply(request_id: &str, stream_id: &str) -> Vec<Message> {
    let mut out = vec![
        Message::Text(reply_frame(request_id, "turn.start", r#"{"context":{"serviceTag":"fake"}}"#).into()),
        Message::Text(
            reply_frame(
                request_id,
                "response",
                &json!({ "context": { "serviceTag": "fake" }, "audio": { "type": "inline", "streamId": stream_id } }).to_string(),
            )
            .into(),
        ),
    ];
    let audio: Vec<u8> = (0..SYNTHESIS_AUDIO_BYTES)
        .map(|i| (i % 251) as u8)
        .collect();
    let head = format!("Path:audio\r\nX-RequestId:{request_id}\r\nX-StreamId:{stream_id}\r\nContent-Type:audio/mpeg");
    for chunk in audio.chunks(SYNTHESIS_CHUNK_BYTES) {
        out.push(Message::Binary(binary_frame(&head, chunk).into()));
    }
    out.push(Message::Text(
        reply_frame(
            request_id,
            "audio.metadata",
            r#"{"Metadata":[{"Type":"SessionEnd","Data":{"Offset":10000000}}]}"#,
        )
        .into(),
    ));
    out.push(Message::Text(
        reply_frame(request_id, "turn.end", "{}").into(),
    ));
    out
}

/// The Speech SDK's custom-domain probe (SDK ≥ 1.45, `ConnectionFactoryBase.
/// getRedirectUrlFromEndpoint`): for an endpoint with no path it first sends
/// `GET https://<host>/<generated path>?GenerateRedirectResponse=true`, without a token, and
/// connects where the plain-text answer points.
fn is_redirect_probe(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.eq_ignore_ascii_case("GenerateRedirectResponse=true"))
    })
}

/// The answer Azure gives a probe: 200, the URL to connect to as plain text (the regional host
/// for a custom domain). The fake points at itself, same path, so the SDK's next step (a WebSocket
/// with the token) reaches this service.
fn redirect_answer(headers: &HeaderMap, path: &str) -> Response {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return json_error(StatusCode::BAD_REQUEST, "no-host", None);
    };
    let mut r = format!("http://{host}{path}").into_response();
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    h.insert(axum::http::header::CACHE_CONTROL, crate::http::NO_STORE);
    r
}

/// `GET /speech/...` and `/stt/speech/...`: answers the SDK's redirect probe; otherwise checks
/// the token before the upgrade, as the real service does, records the attempt, then runs the
/// session.
pub async fn speech_ws(
    State(svc): State<Arc<SpeechService>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if ws.is_err() && is_redirect_probe(query.as_deref()) {
        return redirect_answer(&headers, uri.path());
    }
    let token = presented_token(query.as_deref(), &headers);
    let verdict = match &token {
        None => Verdict::Missing,
        Some(t) => svc.signer.verify(t, now_unix()),
    };
    let behaviour = svc.behaviour();
    let accepted = matches!(verdict, Verdict::Accepted { .. });
    let service = Service::of(uri.path(), query.as_deref());
    let conn = Arc::new(SpeechConn {
        at_ms: now_ms(),
        verdict: verdict.as_str(),
        jti: verdict.jti().map(str::to_string),
        phrases: AtomicU64::new(0),
        path: uri.path().chars().take(MAX_LOGGED_PATH).collect(),
        service,
        credential: credential_form(query.as_deref(), &headers),
        ticket: carries_ticket(query.as_deref(), &headers),
        to: target_languages(query.as_deref()),
        status: match (accepted, behaviour.refuse_status) {
            (false, _) => 401,
            (true, Some(s)) => s,
            (true, None) => 101,
        },
    });
    svc.record(Arc::clone(&conn));
    let fp = token.as_deref().map(fingerprint).unwrap_or_default();
    tracing::info!(verdict = verdict.as_str(), jti = conn.jti.as_deref().unwrap_or("-"), fingerprint = %fp,
        service = service.as_str(), credential = conn.credential, "fake speech connection");
    if !accepted {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some(json!({ "detail": verdict.as_str() })),
        );
    }
    if let Some(s) = behaviour.refuse_status {
        let status = StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return json_error(
            status,
            crate::http::kind_for_status(status.as_u16()),
            Some(json!({ "detail": "refused by /admin/speech" })),
        );
    }
    let ws = match ws {
        Ok(ws) => ws
            .read_buffer_size(WS_BUFFER_BYTES)
            .write_buffer_size(WS_BUFFER_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
            .max_message_size(MAX_FRAME_BYTES),
        Err(rejection) => return crate::http::ws_rejection(rejection),
    };
    let idle = svc.idle_timeout;
    let going_away = svc.shutdown.going_away();
    // held until the session has closed: shutdown waits for it
    let hold = svc.shutdown.hold();
    ws.on_upgrade(move |socket| async move {
        session(socket, behaviour, conn, idle, going_away).await;
        drop(hold);
    })
}

/// A stream id for one synthesis turn (the real service sends a GUID; any token the SDK can
/// compare will do).
fn stream_id(request_id: &str) -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    let tail: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("{}{tail}", hex::encode(b)).to_ascii_uppercase()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
    // let the close handshake finish, bounded
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn session(
    mut socket: WebSocket,
    behaviour: SpeechBehaviour,
    conn: Arc<SpeechConn>,
    idle: Duration,
    mut going_away: tokio::sync::watch::Receiver<bool>,
) {
    let k = behaviour.reply_after_audio_frames.max(1);
    let deadline = behaviour
        .drop_after_ms
        .and_then(|ms| tokio::time::Instant::now().checked_add(Duration::from_millis(ms)));
    let mut turns = TurnTracker::default();
    let mut current_request = String::new();
    let jti = conn.jti.as_deref().unwrap_or("-").to_string();
    loop {
        if *going_away.borrow() {
            close(&mut socket, CLOSE_GOING_AWAY, "broker shutting down").await;
            return;
        }
        let msg = tokio::select! {
            m = tokio::time::timeout(idle, socket.recv()) => match m {
                Ok(m) => m,
                Err(_) => {
                    tracing::debug!(jti = %jti, "fake speech: idle timeout");
                    close(&mut socket, 1000, "idle timeout").await;
                    return;
                }
            },
            _ = going_away.changed() => {
                close(&mut socket, CLOSE_GOING_AWAY, "broker shutting down").await;
                return;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                tracing::debug!(jti = %jti, code = behaviour.close_code, "fake speech: dropping connection (dropAfterMs)");
                let reason = if behaviour.close_code == 1000 { "" } else { "fake service failure" };
                close(&mut socket, behaviour.close_code, reason).await;
                return;
            }
        };
        let msg = match msg {
            None => return,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!(jti = %jti, error = %e, "fake speech: receive error");
                close(&mut socket, CLOSE_TOO_BIG, "frame too large or invalid").await;
                return;
            }
        };
        match msg {
            Message::Text(t) => {
                let (h, body) = parse_text_frame(t.as_str());
                if let Some(id) = h.get("X-RequestId") {
                    current_request = id.chars().take(64).collect();
                }
                let path = h.get("Path").unwrap_or("-");
                tracing::debug!(path, request = %current_request, body_len = body.len(), "fake speech: text frame");
                if conn.service == Service::Synthesis && path.eq_ignore_ascii_case("ssml") {
                    let stream_id = stream_id(&current_request);
                    for m in synthesis_reply(&current_request, &stream_id) {
                        if socket.send(m).await.is_err() {
                            return;
                        }
                    }
                    conn.phrases.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Binary(b) => {
                let Some((h, audio)) = parse_binary_frame(&b) else {
                    continue;
                };
                let id: String = h
                    .get("X-RequestId")
                    .map(|s| s.chars().take(64).collect())
                    .unwrap_or_else(|| current_request.clone());
                tracing::trace!(request = %id, audio_len = audio.len(), "fake speech: audio frame");
                if conn.service != Service::Synthesis && turns.audio_frame(&id, k) {
                    let reply = match conn.service {
                        Service::Translation => {
                            translation_reply(&id, &conn.to, behaviour.end_turn)
                        }
                        _ => turn_reply(&id, behaviour.end_turn),
                    };
                    for frame in reply {
                        if socket.send(Message::Text(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    conn.phrases.fetch_add(1, Ordering::Relaxed);
                }
                current_request = id;
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_from_query_or_header() {
        let h = HeaderMap::new();
        assert_eq!(
            presented_token(
                Some("language=en-US&Authorization=Bearer%20abc.def.ghi&X-ConnectionId=1"),
                &h
            )
            .as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(
            presented_token(
                Some("Authorization=Bearer%20aad%23%2Fsubscriptions%2Fx%23tok"),
                &h
            )
            .as_deref(),
            Some("tok")
        );
        assert_eq!(presented_token(Some("language=en-US"), &h), None);
        assert_eq!(presented_token(Some("Authorization=Bearer%20"), &h), None);
        let mut h2 = HeaderMap::new();
        h2.insert("authorization", HeaderValue::from_static("Bearer xyz"));
        assert_eq!(presented_token(None, &h2).as_deref(), Some("xyz"));
    }

    #[test]
    fn service_by_the_path_the_sdk_generates() {
        use Service::*;
        let t = Some("from=en-US&to=de");
        assert_eq!(
            Service::of("/tts/cognitiveservices/websocket/v1", None),
            Synthesis
        );
        assert_eq!(
            Service::of("/cognitiveservices/websocket/v1", None),
            Synthesis
        );
        assert_eq!(
            Service::of("/speech/translation/cognitiveservices/v1", t),
            Translation
        );
        assert_eq!(Service::of("/stt/speech/universal/v2", t), Translation);
        assert_eq!(
            Service::of("/stt/speech/universal/v2", Some("language=en-US")),
            Recognition
        );
        assert_eq!(
            Service::of("/speech/recognition/conversation/cognitiveservices/v1", t),
            Recognition,
            "a recognition path does not translate"
        );
    }

    #[test]
    fn target_languages_are_bounded() {
        assert_eq!(
            target_languages(Some("from=en-US&to=de%2Cfr-CA")),
            ["de", "fr-CA"]
        );
        assert_eq!(target_languages(Some("to=de&to=ja")), ["de", "ja"]);
        assert!(target_languages(Some("to=%3Cscript%3E,")).is_empty());
        assert!(target_languages(None).is_empty());
        let many = (0..100)
            .map(|i| format!("l{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            target_languages(Some(&format!("to={many}"))).len(),
            MAX_TARGET_LANGUAGES
        );
    }

    #[test]
    fn credential_form_and_ticket_marks() {
        let mut h = HeaderMap::new();
        assert_eq!(
            credential_form(Some("Authorization=Bearer%20x"), &h),
            "query"
        );
        assert_eq!(credential_form(Some("language=en-US"), &h), "none");
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert_eq!(credential_form(Some("language=en-US"), &h), "header");
        assert!(!carries_ticket(Some("language=en-US"), &h));
        assert!(carries_ticket(
            Some("Authorization=Bearer%20rt1.a.b"),
            &HeaderMap::new()
        ));
        h.insert("authorization", HeaderValue::from_static("Bearer rt1.a.b"));
        assert!(carries_ticket(None, &h));
    }

    #[test]
    fn synthesis_frames_follow_the_sdk_framing() {
        let out = synthesis_reply("RID", "SID");
        let Message::Binary(b) = &out[2] else {
            panic!("audio is binary")
        };
        let (h, audio) = parse_binary_frame(b).unwrap();
        assert_eq!(h.get("Path"), Some("audio"));
        assert_eq!(h.get("X-RequestId"), Some("RID"));
        assert_eq!(h.get("X-StreamId"), Some("SID"));
        assert_eq!(audio.len(), SYNTHESIS_CHUNK_BYTES);
        let Message::Text(r) = &out[1] else {
            panic!("response is text")
        };
        let (h, body) = parse_text_frame(r.as_str());
        assert_eq!(h.get("Path"), Some("response"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["audio"]["streamId"], "SID");
        assert_eq!(translation_reply("R", &["de".into()], false).len(), 3);
    }

    #[test]
    fn turn_state_is_bounded() {
        let mut t = TurnTracker::default();
        assert!(!t.audio_frame("a", 2));
        assert!(t.audio_frame("a", 2));
        assert!(!t.audio_frame("a", 2), "answered once");
        for i in 0..200_000 {
            t.audio_frame(&format!("turn-{i}"), 3);
        }
        assert!(t.len() <= MAX_TRACKED_TURNS);
    }

    #[test]
    fn framing() {
        let (h, body) = parse_text_frame("Path:speech.config\r\nX-RequestId:ABC\r\nContent-Type:application/json\r\n\r\n{\"a\":1}");
        assert_eq!(h.get("path"), Some("speech.config"));
        assert_eq!(h.get("x-requestid"), Some("ABC"));
        assert_eq!(body, "{\"a\":1}");
        let head = b"Path:audio\r\nX-RequestId:ABC\r\nContent-Type:audio/x-wav";
        let mut frame = (head.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(head);
        frame.extend_from_slice(&[1, 2, 3]);
        let (h, audio) = parse_binary_frame(&frame).unwrap();
        assert_eq!(h.get("Path"), Some("audio"));
        assert_eq!(audio, &[1, 2, 3]);
        assert!(parse_binary_frame(&[0, 50, 1]).is_none());
        assert_eq!(turn_reply("ID1", false).len(), 3);
        let r = turn_reply("ID1", true);
        assert_eq!(r.len(), 6);
        assert!(r[3].starts_with("X-RequestId:ID1\r\nContent-Type:application/json; charset=utf-8\r\nPath:speech.phrase\r\n\r\n"));
        assert!(r[3].contains("Hello world."));
    }
}
