//! Talking to the fake Speech service (directly or through the relay) as the SDK does: frames,
//! connections, turns, the service's connection log.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use speech_token_broker::RunningBroker;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `GET /admin/stats`.
pub async fn stats(b: &RunningBroker) -> Value {
    super::get_json(b, "/admin/stats").await
}

/// `POST /admin/speech` with `body`; asserts 200.
pub async fn set_behaviour(b: &RunningBroker, body: Value) -> Value {
    super::admin(b, "/admin/speech", body).await
}

/// Reads `ws` until it ends, skipping other frames: its close frame (`None`: it ended without
/// one); panics if it has not ended within `within`.
pub async fn close_frame(ws: &mut Ws, within: Duration) -> Option<CloseFrame> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c,
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection did not end within {within:?}"))
}

/// Opens a WebSocket (with an `Origin` header if given); `Err(status)` when the upgrade is refused.
pub async fn connect(u: &str, origin: Option<&str>) -> Result<Ws, u16> {
    let mut req = u.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// An SDK text frame: headers, blank line, body.
pub fn text_frame(path: &str, request_id: &str, body: &str) -> Message {
    Message::Text(
        format!("Path:{path}\r\nX-RequestId:{request_id}\r\nX-Timestamp:2026-01-01T00:00:00.000Z\r\nContent-Type:application/json\r\n\r\n{body}")
            .into(),
    )
}

/// An SDK audio frame: u16 big-endian header length, headers, audio bytes.
pub fn audio_frame(request_id: &str, audio: &[u8]) -> Message {
    let head = format!("Path:audio\r\nX-RequestId:{request_id}\r\nX-Timestamp:2026-01-01T00:00:00.000Z\r\nContent-Type:audio/x-wav");
    let mut b = (head.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(head.as_bytes());
    b.extend_from_slice(audio);
    Message::Binary(b.into())
}

/// A service frame, parsed: its headers (lower-case names) and body (text, or the bytes after
/// the binary header).
#[derive(Debug, Clone)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub bytes: Vec<u8>,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.header("Path").unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(self.text.as_deref().unwrap_or("null")).unwrap()
    }
    fn parse_headers(h: &str) -> Vec<(String, String)> {
        h.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }
    pub fn from_message(m: &Message) -> Option<Frame> {
        match m {
            Message::Text(t) => {
                let (h, body) = t.as_str().split_once("\r\n\r\n")?;
                Some(Frame {
                    headers: Self::parse_headers(h),
                    text: Some(body.to_string()),
                    bytes: Vec::new(),
                })
            }
            Message::Binary(b) => {
                let n = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
                let h = std::str::from_utf8(b.get(2..2 + n)?).ok()?;
                Some(Frame {
                    headers: Self::parse_headers(h),
                    text: None,
                    bytes: b[2 + n..].to_vec(),
                })
            }
            _ => None,
        }
    }
}

/// Reads service frames until one with path `last` (included) or until the socket closes;
/// panics after 5 s of silence.
pub async fn frames_until(ws: &mut Ws, last: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame in 5 s; so far {out:?}"));
        let Some(Ok(m)) = m else { return out };
        if matches!(m, Message::Close(_)) {
            return out;
        }
        if let Some(f) = Frame::from_message(&m) {
            let done = f.path() == last;
            out.push(f);
            if done {
                return out;
            }
        }
    }
}

/// One recognition or translation turn as the SDK plays it: `speech.config`, `speech.context`,
/// three audio frames; the service's frames up to `turn.end`.
pub async fn audio_turn(ws: &mut Ws, request_id: &str) -> Vec<Frame> {
    ws.send(text_frame("speech.config", request_id, "{}"))
        .await
        .unwrap();
    ws.send(text_frame("speech.context", request_id, "{}"))
        .await
        .unwrap();
    for _ in 0..3 {
        ws.send(audio_frame(request_id, &[0u8; 3200]))
            .await
            .unwrap();
    }
    frames_until(ws, "turn.end").await
}

/// One synthesis turn as `SynthesisAdapterBase` plays it: `speech.config`, `synthesis.context`,
/// `ssml`; the service's frames up to `turn.end`.
pub async fn synthesis_turn(ws: &mut Ws, request_id: &str) -> Vec<Frame> {
    ws.send(text_frame("speech.config", request_id, "{}"))
        .await
        .unwrap();
    ws.send(text_frame(
        "synthesis.context",
        request_id,
        r#"{"synthesis":{"audio":{"outputFormat":"audio-24khz-48kbitrate-mono-mp3"}}}"#,
    ))
    .await
    .unwrap();
    ws.send(Message::Text(
        format!("Path:ssml\r\nX-RequestId:{request_id}\r\nContent-Type:application/ssml+xml\r\n\r\n<speak version='1.0' xml:lang='en-US'><voice name='en-US-AvaMultilingualNeural'>Hello world.</voice></speak>")
            .into(),
    ))
    .await
    .unwrap();
    frames_until(ws, "turn.end").await
}

/// Checks a synthesis reply the way the SDK reads it; returns the audio bytes.
pub fn synthesized_audio(frames: &[Frame], request_id: &str) -> Vec<u8> {
    let paths: Vec<&str> = frames.iter().map(Frame::path).collect();
    assert_eq!(paths.first(), Some(&"turn.start"), "{paths:?}");
    assert_eq!(paths.get(1), Some(&"response"), "{paths:?}");
    assert_eq!(paths.last(), Some(&"turn.end"), "{paths:?}");
    let stream = frames[1].json()["audio"]["streamId"]
        .as_str()
        .expect("response names the audio stream")
        .to_string();
    let mut audio = Vec::new();
    for f in frames {
        assert_eq!(f.header("X-RequestId"), Some(request_id), "{f:?}");
        if f.path() == "audio" {
            assert!(f.text.is_none(), "audio frames are binary");
            assert_eq!(f.header("X-StreamId"), Some(stream.as_str()));
            audio.extend_from_slice(&f.bytes);
        }
    }
    audio
}
