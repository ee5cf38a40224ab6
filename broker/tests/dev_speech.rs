//! The fake Speech WebSocket service: token checks before the upgrade, SDK framing, turns, drops.

mod common;

use std::time::Duration;

use common::speech::{
    audio_frame, audio_turn, connect, set_behaviour, stats, synthesis_turn, synthesized_audio,
    text_frame, Ws,
};
use common::{client, grant, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use speech_token_broker::devjwt::DevSigner;
use speech_token_broker::RunningBroker;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const PATH: &str = "/speech/recognition/conversation/cognitiveservices/v1";

fn ws_url(b: &RunningBroker, path: &str, token: Option<&str>) -> String {
    let mut u = format!("ws://{}{path}?language=en-US&format=simple", b.addr);
    if let Some(t) = token {
        u.push_str(&format!("&Authorization=Bearer%20{}", urlencode(t)));
    }
    u.push_str("&X-ConnectionId=0123456789ABCDEF");
    u
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn token(b: &RunningBroker) -> String {
    grant(b).await["token"].as_str().unwrap().to_string()
}

async fn expect_rejected(url: String) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connection should have been refused"),
    }
}

fn split(frame: &str) -> (Vec<(String, String)>, String) {
    let (h, body) = frame.split_once("\r\n\r\n").expect("header/body separator");
    let headers = h
        .split("\r\n")
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (headers, body.to_string())
}

/// Plays one turn like the SDK does and returns the service's text frames for it.
async fn one_turn(ws: &mut Ws, request_id: &str, audio_frames: usize) -> Vec<String> {
    ws.send(text_frame(
        "speech.config",
        request_id,
        r#"{"context":{"system":{"name":"SpeechSDK"}}}"#,
    ))
    .await
    .unwrap();
    ws.send(text_frame("speech.context", request_id, "{}"))
        .await
        .unwrap();
    for _ in 0..audio_frames {
        ws.send(audio_frame(request_id, &[0u8; 3200]))
            .await
            .unwrap();
    }
    let mut frames = Vec::new();
    while frames.len() < 6 {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("reply in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            frames.push(t.to_string());
        }
    }
    frames
}

#[tokio::test]
async fn valid_token_gets_a_recognition_per_turn() {
    let b = start(&[], &[]).await;
    let t = token(&b).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_url(&b, PATH, Some(&t)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);

    // fewer than 3 audio frames: no answer yet
    ws.send(text_frame("speech.config", "REQ1", "{}"))
        .await
        .unwrap();
    ws.send(audio_frame("REQ1", &[1; 320])).await.unwrap();
    ws.send(audio_frame("REQ1", &[1; 320])).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "no reply before the 3rd audio frame"
    );
    ws.send(audio_frame("REQ1", &[1; 320])).await.unwrap();
    let mut frames = Vec::new();
    while frames.len() < 6 {
        if let Message::Text(t) = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            frames.push(t.to_string());
        }
    }
    let paths: Vec<String> = frames
        .iter()
        .map(|f| {
            let (h, _) = split(f);
            assert_eq!(h[0], ("X-RequestId".to_string(), "REQ1".to_string()));
            assert_eq!(
                h[1],
                (
                    "Content-Type".to_string(),
                    "application/json; charset=utf-8".to_string()
                )
            );
            h[2].1.clone()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "turn.start",
            "speech.startDetected",
            "speech.hypothesis",
            "speech.phrase",
            "speech.endDetected",
            "turn.end"
        ]
    );
    let (_, phrase) = split(&frames[3]);
    let phrase: Value = serde_json::from_str(&phrase).unwrap();
    assert_eq!(phrase["RecognitionStatus"], "Success");
    assert_eq!(phrase["DisplayText"], "Hello world.");
    let (_, start) = split(&frames[0]);
    assert_eq!(
        serde_json::from_str::<Value>(&start).unwrap(),
        json!({"context":{"serviceTag":"fake"}})
    );

    // more audio in the same turn: no second answer; a new X-RequestId: a new answer
    ws.send(audio_frame("REQ1", &[1; 320])).await.unwrap();
    let second = one_turn(&mut ws, "REQ2", 3).await;
    assert!(second.iter().all(|f| f.starts_with("X-RequestId:REQ2\r\n")));
    assert!(second[3].contains("Hello world."));
    ws.close(None).await.unwrap();

    let s = stats(&b).await;
    let conns = s["speechConnections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["verdict"], "accepted");
    assert_eq!(conns[0]["phrases"], 2);
    assert_eq!(conns[0]["jti"], common::decode_payload(&t)["jti"]);
    assert!(conns[0]["at"].as_u64().unwrap() > 1_700_000_000_000);
}

#[tokio::test]
async fn header_auth_aad_form_and_other_paths() {
    let b = start(&[], &[]).await;
    let t = token(&b).await;
    // non-browser client: Authorization header
    let mut req = format!("ws://{}{PATH}?language=en-US", b.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert!(one_turn(&mut ws, "H1", 3).await[3].contains("Hello world."));
    // aad#<resourceId>#<token> form, and the /stt/speech/ path family
    let aad = format!("aad#/subscriptions/0/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/x#{t}");
    let (mut ws2, _) =
        tokio_tungstenite::connect_async(ws_url(&b, "/stt/speech/universal/v2", Some(&aad)))
            .await
            .unwrap();
    assert!(one_turn(&mut ws2, "A1", 3).await[3].contains("Hello world."));
    let (_ws3, _) = tokio_tungstenite::connect_async(ws_url(
        &b,
        "/speech/synthesis/cognitiveservices/websocket/v1",
        Some(&t),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_tokens_are_refused_before_upgrade() {
    let b = start(&[], &[]).await;
    let dev = b.state.dev.as_ref().unwrap();
    let now = common::now_unix();
    let (expired, expired_claims) = dev.signer.sign(now - 100, 10);
    let (foreign, _) = DevSigner::new_random().sign(now, 600);

    expect_rejected(ws_url(&b, PATH, Some(&expired))).await;
    expect_rejected(ws_url(&b, PATH, Some(&foreign))).await;
    expect_rejected(ws_url(&b, PATH, None)).await;
    expect_rejected(ws_url(&b, PATH, Some("not-a-jwt"))).await;

    // the rejection is a plain HTTP 401 answer
    let r = client()
        .get(format!(
            "http://{}{PATH}?Authorization=Bearer%20{expired}",
            b.addr
        ))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let s = stats(&b).await;
    let verdicts: Vec<&str> = s["speechConnections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [
            "expired",
            "bad-signature",
            "missing",
            "malformed",
            "expired"
        ]
    );
    assert_eq!(
        s["speechConnections"][0]["jti"],
        expired_claims.jti.as_str()
    );
}

#[tokio::test]
async fn token_expiring_by_ttl_is_refused() {
    let b = start(&["--ttl", "2"], &[]).await;
    let t = token(&b).await;
    let (ok, _) = tokio_tungstenite::connect_async(ws_url(&b, PATH, Some(&t)))
        .await
        .unwrap();
    drop(ok);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    expect_rejected(ws_url(&b, PATH, Some(&t))).await;
    let s = stats(&b).await;
    let verdicts: Vec<&str> = s["speechConnections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["accepted", "expired"]);
}

#[tokio::test]
async fn drop_after_ms_closes_with_1000_and_reply_count_is_configurable() {
    let b = start(&[], &[]).await;
    set_behaviour(&b, json!({"dropAfterMs": 400, "replyAfterAudioFrames": 1})).await;
    let t = token(&b).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&b, PATH, Some(&t)))
        .await
        .unwrap();
    let opened = std::time::Instant::now();
    ws.send(text_frame("speech.config", "D1", "{}"))
        .await
        .unwrap();
    ws.send(audio_frame("D1", &[0; 320])).await.unwrap();
    let mut texts = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(_))) => texts += 1,
            Some(Ok(Message::Close(f))) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(texts, 6, "answered after one audio frame");
    assert_eq!(close.expect("close frame").code, CloseCode::Normal);
    let dt = opened.elapsed();
    assert!(
        dt >= Duration::from_millis(350) && dt < Duration::from_secs(3),
        "{dt:?}"
    );
    // null turns dropping off again
    set_behaviour(&b, json!({"dropAfterMs": null})).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&b, PATH, Some(&t)))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), ws.next())
            .await
            .is_err(),
        "stays open"
    );
}

#[tokio::test]
async fn end_turn_false_leaves_the_turn_open() {
    let b = start(&[], &[]).await;
    set_behaviour(&b, json!({"endTurn": false})).await;
    let t = token(&b).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&b, PATH, Some(&t)))
        .await
        .unwrap();
    ws.send(text_frame("speech.config", "C1", "{}"))
        .await
        .unwrap();
    for _ in 0..3 {
        ws.send(audio_frame("C1", &[0; 320])).await.unwrap();
    }
    let mut paths = Vec::new();
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(500), ws.next()).await
    {
        paths.push(split(&t).0[2].1.clone());
    }
    assert_eq!(
        paths,
        ["turn.start", "speech.startDetected", "speech.phrase"]
    );
    let s = stats(&b).await;
    assert_eq!(s["speech"]["endTurn"], false);
    assert_eq!(s["speechConnections"][0]["phrases"], 1);
    client().post(b.url("/admin/reset")).send().await.unwrap();
    assert_eq!(stats(&b).await["speech"]["endTurn"], true);
}

#[tokio::test]
async fn translation_answers_on_the_sdks_translation_paths_only() {
    let b = start(&[], &[]).await;
    let t = urlencode(&token(&b).await);
    let base = format!("ws://{}", b.addr);
    let q = format!("from=en-US&to=de%2Cja&scenario=&Authorization=Bearer%20{t}&X-ConnectionId=1");
    // V2 (SDK 1.52's default) and V1
    for path in [
        "/stt/speech/universal/v2",
        "/speech/translation/cognitiveservices/v1",
    ] {
        let mut ws = connect(&format!("{base}{path}?{q}"), None).await.unwrap();
        let frames = audio_turn(&mut ws, "TR").await;
        let paths: Vec<&str> = frames.iter().map(|f| f.path()).collect();
        assert_eq!(
            paths,
            [
                "turn.start",
                "speech.startDetected",
                "translation.hypothesis",
                "translation.phrase",
                "speech.endDetected",
                "turn.end"
            ],
            "{path}"
        );
        assert!(frames.iter().all(|f| f.header("X-RequestId") == Some("TR")));
        let hyp = frames[2].json();
        assert_eq!(hyp["Translation"]["TranslationStatus"], "Success");
        assert_eq!(hyp["Translation"]["Translations"][0]["Language"], "de");
        let phrase = frames[3].json();
        assert_eq!(
            phrase["Translation"]["Translations"],
            json!([{"Language": "de", "Text": "Hallo Welt."}, {"Language": "ja", "Text": "[ja] Hello world."}])
        );
        assert_eq!(phrase["Offset"], 0);
        assert_eq!(phrase["Duration"], 10_000_000);
    }
    // a recognition path does not translate, even with `to`; universal v2 without `to` recognizes
    for path in [PATH, "/stt/speech/universal/v2"] {
        let to = if path == PATH { "&to=de" } else { "" };
        let mut ws = connect(
            &format!("{base}{path}?language=en-US{to}&Authorization=Bearer%20{t}"),
            None,
        )
        .await
        .unwrap();
        let frames = audio_turn(&mut ws, "RC").await;
        assert_eq!(frames[3].path(), "speech.phrase", "{path}");
    }
    // no target language: the translation fails, the turn still ends
    let mut ws = connect(
        &format!(
            "{base}/speech/translation/cognitiveservices/v1?from=en-US&Authorization=Bearer%20{t}"
        ),
        None,
    )
    .await
    .unwrap();
    let frames = audio_turn(&mut ws, "NT").await;
    assert_eq!(
        frames[3].json()["Translation"]["TranslationStatus"],
        "Error"
    );
    // continuous translation leaves the turn open
    set_behaviour(&b, json!({"endTurn": false})).await;
    let mut ws = connect(&format!("{base}/stt/speech/universal/v2?{q}"), None)
        .await
        .unwrap();
    ws.send(text_frame("speech.config", "CT", "{}"))
        .await
        .unwrap();
    for _ in 0..3 {
        ws.send(audio_frame("CT", &[0; 320])).await.unwrap();
    }
    let frames = common::speech::frames_until(&mut ws, "translation.phrase").await;
    assert_eq!(frames.len(), 3);
    let st = stats(&b).await;
    let conns = st["speechConnections"].as_array().unwrap();
    let services: Vec<&str> = conns
        .iter()
        .map(|c| c["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "translation",
            "translation",
            "recognition",
            "recognition",
            "translation",
            "translation"
        ]
    );
    assert_eq!(conns[0]["to"], json!(["de", "ja"]));
    assert!(conns
        .iter()
        .all(|c| c["credential"] == "query" && c["ticket"] == false));
}

#[tokio::test]
async fn synthesis_answers_ssml_with_the_audio_stream() {
    let b = start(&[], &[]).await;
    let t = token(&b).await;
    let mut ws = connect(
        &format!(
            "ws://{}/tts/cognitiveservices/websocket/v1?Authorization=Bearer%20{}&X-ConnectionId=1",
            b.addr,
            urlencode(&t)
        ),
        None,
    )
    .await
    .unwrap();
    let frames = synthesis_turn(&mut ws, "SY1").await;
    let paths: Vec<&str> = frames.iter().map(|f| f.path()).collect();
    let audio_frames = speech_token_broker::speech::SYNTHESIS_AUDIO_BYTES
        / speech_token_broker::speech::SYNTHESIS_CHUNK_BYTES;
    let mut expected = vec!["turn.start", "response"];
    expected.extend(std::iter::repeat_n("audio", audio_frames));
    expected.extend(["audio.metadata", "turn.end"]);
    assert_eq!(paths, expected);
    let audio = synthesized_audio(&frames, "SY1");
    assert_eq!(
        audio.len(),
        speech_token_broker::speech::SYNTHESIS_AUDIO_BYTES
    );
    assert_eq!(
        frames[frames.len() - 2].json()["Metadata"][0]["Type"],
        "SessionEnd"
    );
    // each turn has its own stream
    let again = synthesis_turn(&mut ws, "SY2").await;
    assert_ne!(
        again[1].json()["audio"]["streamId"],
        frames[1].json()["audio"]["streamId"]
    );
    // audio frames to a synthesis connection get no recognition answer
    ws.send(audio_frame("SY3", &[0; 320])).await.unwrap();
    ws.send(audio_frame("SY3", &[0; 320])).await.unwrap();
    ws.send(audio_frame("SY3", &[0; 320])).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), ws.next())
            .await
            .is_err(),
        "no answer to audio on a synthesis connection"
    );
    let st = stats(&b).await;
    let c = &st["speechConnections"][0];
    assert_eq!(c["service"], "synthesis");
    assert_eq!(c["path"], "/tts/cognitiveservices/websocket/v1");
    assert_eq!(c["phrases"], 2);
    assert_eq!(c["status"], 101);
}

#[tokio::test]
async fn new_paths_refuse_invalid_tokens_before_upgrade_too() {
    let b = start(&[], &[]).await;
    for path in [
        "/tts/cognitiveservices/websocket/v1",
        "/cognitiveservices/websocket/v1",
        "/speech/translation/cognitiveservices/v1",
    ] {
        expect_rejected(format!("ws://{}{path}?from=en-US&to=de", b.addr)).await;
        expect_rejected(format!(
            "ws://{}{path}?Authorization=Bearer%20not.a.token",
            b.addr
        ))
        .await;
    }
    let st = stats(&b).await;
    let conns = st["speechConnections"].as_array().unwrap();
    assert_eq!(conns.len(), 6);
    assert!(conns
        .iter()
        .all(|c| c["status"] == 401 && c["verdict"] != "accepted"));
}

#[tokio::test]
async fn close_code_and_refusal_knobs() {
    let b = start(&[], &[]).await;
    let t = token(&b).await;
    let u = ws_url(&b, PATH, Some(&t));
    let echoed = set_behaviour(&b, json!({"dropAfterMs": 200, "closeCode": 1011})).await;
    assert_eq!(echoed["closeCode"], 1011);
    let mut ws: Ws = connect(&u, None).await.unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(f))) => break f.expect("close frame"),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Error);
    // codes a server may not send fall back to 1000; refusals are 4xx/5xx only
    let echoed = set_behaviour(&b, json!({"closeCode": 1006, "refuseStatus": 200})).await;
    assert_eq!(echoed["closeCode"], 1000);
    assert_eq!(echoed["refuseStatus"], Value::Null);
    set_behaviour(&b, json!({"refuseStatus": 503})).await;
    assert_eq!(connect(&u, None).await.err(), Some(503));
    // a bad token is still 401, before the refusal knob
    assert_eq!(
        connect(&ws_url(&b, PATH, Some("bad.token.x")), None)
            .await
            .err(),
        Some(401)
    );
    let st = stats(&b).await;
    assert_eq!(st["speech"]["refuseStatus"], 503);
    let statuses: Vec<u64> = st["speechConnections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [101, 503, 401]);
}
