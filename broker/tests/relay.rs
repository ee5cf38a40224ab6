//! `--relay` against the dev broker's fake Speech service: the browser side holds only a relay
//! ticket; the relay validates it on upgrade, strips it, and connects upstream with the broker's
//! own credential in a header.

mod common;

use std::time::Duration;

use common::speech::{
    audio_turn, close_frame, connect, set_behaviour, stats, synthesis_turn, synthesized_audio, Ws,
};
use common::{get, grant, grant_with, start, TOKEN};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use speech_token_broker::RunningBroker;
use tokio_tungstenite::tungstenite::Message;

fn url(endpoint: &str, ticket: &str) -> String {
    format!("{endpoint}?language=en-US&Authorization=Bearer%20{ticket}&X-ConnectionId=ABC")
}

/// A fresh grant's endpoint with its ticket, as the SDK opens it.
async fn ticket_url(b: &RunningBroker) -> String {
    let v = grant(b).await;
    url(
        v["endpoint"].as_str().unwrap(),
        v["token"].as_str().unwrap(),
    )
}

async fn one_turn(ws: &mut Ws) -> Vec<String> {
    ws.send(Message::Text(
        "Path:speech.config\r\nX-RequestId:R1\r\nContent-Type:application/json\r\n\r\n{}".into(),
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        let head = b"Path:audio\r\nX-RequestId:R1\r\nContent-Type:audio/x-wav";
        let mut f = (head.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(head);
        f.extend_from_slice(&[0u8; 3200]);
        ws.send(Message::Binary(f.into())).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 6 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => got.push(t.to_string()),
            Some(Ok(_)) => {}
            other => panic!("relay ended early: {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn a_recognition_turn_through_the_relay_with_only_a_ticket() {
    let b = start(&["--relay"], &[]).await;
    let v = grant(&b).await;
    let t = v["token"].as_str().unwrap();
    assert!(t.starts_with("rt1."), "a relay ticket, not a Speech token");
    assert_eq!(v["expiresIn"].as_f64().unwrap(), 60.0);
    let endpoint = v["endpoint"].as_str().unwrap();
    assert_eq!(
        endpoint,
        format!(
            "ws://{}/relay/speech/recognition/conversation/cognitiveservices/v1",
            b.addr
        )
    );
    assert!(v.get("region").is_none());
    let mut ws = connect(&url(endpoint, t), None).await.unwrap();
    let frames = one_turn(&mut ws).await;
    assert!(frames.iter().any(|f| f.contains("Hello world.")));
    ws.close(None).await.unwrap();
    // the fake service saw the broker's own dev token (accepted) in a header, never the ticket
    let st = stats(&b).await;
    let conns = st["speechConnections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{st}");
    assert_eq!(conns[0]["verdict"], "accepted");
    assert_eq!(conns[0]["phrases"], 1);
    assert_eq!(conns[0]["credential"], "header", "{st}");
    assert_eq!(conns[0]["ticket"], false, "{st}");
    assert_eq!(conns[0]["service"], "recognition", "{st}");
    // reconnects with the same (unexpired) ticket work too, as the SDK's do
    let mut ws = connect(&url(endpoint, t), None).await.unwrap();
    one_turn(&mut ws).await;
}

#[tokio::test]
async fn refused_tickets_never_reach_the_upstream() {
    let b = start(
        &[
            "--relay",
            "--relay-ticket-ttl",
            "2",
            "--allow-origin",
            "https://app.example.com",
        ],
        &[],
    )
    .await;
    let app = grant_with(&b, TOKEN, &[("Origin", "https://app.example.com")]).await;
    let endpoint = app["endpoint"].as_str().unwrap().to_string();
    let t = app["token"].as_str().unwrap().to_string();
    // missing
    assert_eq!(
        connect(&format!("{endpoint}?language=en-US"), None)
            .await
            .err(),
        Some(401)
    );
    // tampered
    let mut tampered = t.clone();
    tampered.replace_range(5..6, if &t[5..6] == "A" { "B" } else { "A" });
    assert_eq!(
        connect(&url(&endpoint, &tampered), Some("https://app.example.com"))
            .await
            .err(),
        Some(401)
    );
    // from another origin (or none at all)
    assert_eq!(
        connect(&url(&endpoint, &t), Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(connect(&url(&endpoint, &t), None).await.err(), Some(403));
    // a Speech token is not a ticket
    let dev_token = speech_token_broker::devjwt::DevSigner::new_random()
        .sign(common::now_unix(), 600)
        .0;
    assert_eq!(
        connect(&url(&endpoint, &dev_token), None).await.err(),
        Some(401)
    );
    // valid once, then replayed after expiry
    let mut ws = connect(&url(&endpoint, &t), Some("https://app.example.com"))
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        connect(&url(&endpoint, &t), Some("https://app.example.com"))
            .await
            .err(),
        Some(401)
    );
    // only the one valid connection reached the fake Speech service
    let st = stats(&b).await;
    assert_eq!(st["speechConnections"].as_array().unwrap().len(), 1, "{st}");
}

#[tokio::test]
async fn sessions_per_user_and_idle_time_are_limited() {
    let b = start(
        &[
            "--relay",
            "--relay-max-sessions-per-user",
            "1",
            "--relay-idle-timeout",
            "1",
        ],
        &[],
    )
    .await;
    let u = ticket_url(&b).await;
    let mut first = connect(&u, None).await.unwrap();
    assert_eq!(connect(&u, None).await.err(), Some(429));
    // idle: closed with 1000 after a second without a client frame
    assert_eq!(
        close_code(&mut first, Duration::from_secs(4)).await,
        Some(1000)
    );
    // the slot is free again
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(connect(&u, None).await.is_ok());
}

#[tokio::test]
async fn entra_mode_with_relay_needs_no_token_exposure_opt_in() {
    let ok = common::settings(
        &[
            "--mode",
            "entra",
            "--relay",
            "--endpoint",
            "https://x.cognitiveservices.azure.com",
            "--auth",
            "none",
            "--allow-host",
            "b",
        ],
        &[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"),
            ("IDENTITY_HEADER", "h"),
        ],
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[tokio::test]
async fn the_sdks_redirect_probe_lands_on_the_relay() {
    let b = start(
        &["--mode", "key", "--region", "westeurope", "--relay"],
        &[("SPEECH_KEY", "k")],
    )
    .await;
    let r = get(&b, "/stt/speech/universal/v2?GenerateRedirectResponse=true").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("https://{}/relay/stt/speech/universal/v2", b.addr)
    );
    // the synthesizer's probe (an endpoint without a path, or with exactly the tts path)
    let r = get(
        &b,
        "/tts/cognitiveservices/websocket/v1?GenerateRedirectResponse=true",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!(
            "https://{}/relay/tts/cognitiveservices/websocket/v1",
            b.addr
        )
    );
    let r = get(&b, "/stt/speech/universal/v2").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn total_sessions_and_session_duration_are_limited() {
    let b = start(
        &[
            "--relay",
            "--relay-max-sessions",
            "1",
            "--relay-max-duration",
            "1",
        ],
        &[],
    )
    .await;
    let u = ticket_url(&b).await;
    let mut first = connect(&u, None).await.unwrap();
    assert_eq!(connect(&u, None).await.err(), Some(429), "total cap");
    // a streaming session is still closed (1000) at its duration limit
    let t0 = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let head = b"Path:audio\r\nX-RequestId:R9";
            let mut f = (head.len() as u16).to_be_bytes().to_vec();
            f.extend_from_slice(head);
            f.extend_from_slice(&[0u8; 320]);
            let _ = first.send(Message::Binary(f.into())).await;
            match tokio::time::timeout(Duration::from_millis(100), first.next()).await {
                Ok(Some(Ok(Message::Close(c)))) => return c.map(|c| u16::from(c.code)),
                Ok(None) | Ok(Some(Err(_))) => return None,
                _ => {}
            }
        }
    })
    .await
    .expect("closed at the duration limit");
    assert_eq!(end, Some(1000));
    assert!(t0.elapsed() < Duration::from_millis(2500));
}

/// The server side of a fake upstream's WebSocket.
type UpstreamWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// What a fake upstream saw of each upgrade: request URI and `Authorization` header.
type Upgrades = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A fake Speech service for key mode on a loopback port (`ws://…`): records each upgrade,
/// then plays `session` on its WebSocket.
async fn fake_upstream<F, Fut>(session: F) -> (String, Upgrades)
where
    F: Fn(UpstreamWs) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let seen: Upgrades = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s2 = std::sync::Arc::clone(&seen);
    let session = std::sync::Arc::new(session);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = std::sync::Arc::clone(&s2);
            let session = std::sync::Arc::clone(&session);
            tokio::spawn(async move {
                // tungstenite's callback signature returns its (large) error response by value
                #[allow(clippy::result_large_err)]
                let cb = |req: &Request, resp: Response| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    seen.lock().unwrap().push((req.uri().to_string(), auth));
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await {
                    session(ws).await;
                }
            });
        }
    });
    (format!("ws://{addr}"), seen)
}

/// A fake Speech service for key mode: records what the relay presented, answers one frame,
/// then closes with 1011 (an upstream failure the browser must see as an error, not a hang).
async fn fake_speech_upstream() -> (String, Upgrades) {
    fake_upstream(|mut ws| async move {
        if let Some(Ok(_)) = ws.next().await {
            let _ = ws
                .send(Message::Text("Path:turn.start\r\n\r\n{}".into()))
                .await;
            let _ = ws
                .send(Message::Close(Some(
                    tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: 1011u16.into(),
                        reason: "upstream trouble".into(),
                    },
                )))
                .await;
        }
    })
    .await
}

/// A fake issueToken endpoint (key mode's STS): its base URL and the token it issues.
async fn fake_sts() -> (String, String) {
    use axum::routing::post;
    let issued = common::fake_jwt(600, "relay-upstream");
    let answer = issued.clone();
    let sts = common::serve_fake(axum::Router::new().route(
        "/sts/v1.0/issueToken",
        post(move || {
            let t = answer.clone();
            async move { t }
        }),
    ))
    .await;
    (format!("http://{sts}"), issued)
}

/// A key-mode broker relaying to `upstream` (`--endpoint`), with `extra` flags.
async fn key_relay(sts: &str, upstream: &str, extra: &[&str]) -> RunningBroker {
    let mut argv = vec![
        "--mode",
        "key",
        "--region",
        "westeurope",
        "--sts-base",
        sts,
        "--relay",
        "--endpoint",
        upstream,
    ];
    argv.extend_from_slice(extra);
    start(&argv, &[("SPEECH_KEY", "k")]).await
}

/// A fresh grant's relay URL on a key-mode broker (`ws://`: the test talks to it without the TLS
/// proxy the advertised `wss://` assumes).
async fn key_ticket_url(b: &RunningBroker) -> String {
    let v = grant(b).await;
    let endpoint = v["endpoint"].as_str().unwrap().replace("wss://", "ws://");
    url(&endpoint, v["token"].as_str().unwrap())
}

#[tokio::test]
async fn key_mode_relays_to_the_endpoint_with_the_real_credential_in_a_header() {
    let (sts, issued) = fake_sts().await;
    let (upstream, seen) = fake_speech_upstream().await;
    let b = key_relay(&sts, &upstream, &[]).await;
    let v = grant(&b).await;
    let t = v["token"].as_str().unwrap();
    assert!(t.starts_with("rt1."));
    // behind a TLS proxy the page reaches the relay as wss://<host>; here the socket is plain
    let endpoint = v["endpoint"].as_str().unwrap().replace("wss://", "ws://");
    let mut ws = connect(&url(&endpoint, t), None).await.unwrap();
    ws.send(Message::Text("Path:speech.config\r\n\r\n{}".into()))
        .await
        .unwrap();
    let mut got_frame = false;
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => got_frame = true,
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                None | Some(Err(_)) => return None,
                _ => {}
            }
        }
    })
    .await
    .expect("the upstream close reached the browser side");
    assert!(got_frame, "frames are piped back");
    assert_eq!(
        close,
        Some(1011),
        "an upstream failure is an error close, not a hang"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (uri, auth) = &seen[0];
    assert_eq!(auth.as_deref(), Some(format!("Bearer {issued}").as_str()));
    assert!(
        uri.starts_with("/speech/recognition/conversation/cognitiveservices/v1?"),
        "{uri}"
    );
    assert!(uri.contains("language=en-US"), "{uri}");
    assert!(
        !uri.contains("rt1.") && !uri.to_ascii_lowercase().contains("authorization"),
        "the ticket never goes upstream: {uri}"
    );

    // an upstream that cannot be reached: the upgrade is answered 502
    let dead = key_relay(&sts, "ws://127.0.0.1:9", &[]).await;
    assert_eq!(
        connect(&key_ticket_url(&dead).await, None).await.err(),
        Some(502)
    );
}

/// The relay's URL for `path` (the SDK's service path) on the broker that answered `grant`.
fn relay_url(grant: &Value, path: &str, query: &str) -> String {
    let endpoint = grant["endpoint"].as_str().unwrap();
    let base = &endpoint[..endpoint.find("/relay/").unwrap()];
    let t = grant["token"].as_str().unwrap();
    format!("{base}/relay/{path}?{query}&Authorization=Bearer%20{t}&X-ConnectionId=ABC")
}

/// The fake service's record of every connection: `(service, path, credential, ticket, to)`.
async fn seen(b: &RunningBroker) -> Vec<(String, String, String, bool, Value)> {
    stats(b).await["speechConnections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
                c["credential"].as_str().unwrap().to_string(),
                c["ticket"].as_bool().unwrap(),
                c["to"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn translation_through_the_relay_reaches_the_translation_path() {
    let b = start(&["--relay"], &[]).await;
    let g = grant(&b).await;
    let ep = g["endpoint"].as_str().unwrap();
    let t = g["token"].as_str().unwrap();
    // what client.speechTranslationConfig(SpeechSDK) does: the advertised (recognition) endpoint
    // with the TranslationConnectionFactory's query
    let mut ws = connect(
        &format!(
            "{ep}?from=en-US&to=de%2Cfr&scenario=&Authorization=Bearer%20{t}&X-ConnectionId=ABC"
        ),
        None,
    )
    .await
    .unwrap();
    let frames = audio_turn(&mut ws, "T1").await;
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
        ]
    );
    let phrase = frames[3].json();
    assert_eq!(phrase["RecognitionStatus"], "Success");
    assert_eq!(phrase["Text"], "Hello world.");
    assert_eq!(phrase["Translation"]["TranslationStatus"], "Success");
    assert_eq!(
        phrase["Translation"]["Translations"],
        json!([{"Language": "de", "Text": "Hallo Welt."}, {"Language": "fr", "Text": "Bonjour le monde."}])
    );
    ws.close(None).await.unwrap();
    // the V1 translation path is relayed as it is
    let mut ws = connect(
        &relay_url(
            &g,
            "speech/translation/cognitiveservices/v1",
            "from=en-US&to=de",
        ),
        None,
    )
    .await
    .unwrap();
    let frames = audio_turn(&mut ws, "T2").await;
    assert_eq!(
        frames[3].json()["Translation"]["Translations"][0]["Text"],
        "Hallo Welt."
    );
    // plain recognition on the same endpoint stays recognition
    let mut ws = connect(&url(ep, t), None).await.unwrap();
    let frames = audio_turn(&mut ws, "R1").await;
    assert_eq!(frames[3].path(), "speech.phrase");
    let seen = seen(&b).await;
    let h = "header".to_string();
    assert_eq!(
        seen,
        [
            (
                "translation".to_string(),
                "/stt/speech/universal/v2".to_string(),
                h.clone(),
                false,
                json!(["de", "fr"])
            ),
            (
                "translation".to_string(),
                "/speech/translation/cognitiveservices/v1".to_string(),
                h.clone(),
                false,
                json!(["de"])
            ),
            (
                "recognition".to_string(),
                "/speech/recognition/conversation/cognitiveservices/v1".to_string(),
                h,
                false,
                json!([])
            ),
        ]
    );
}

#[tokio::test]
async fn synthesis_through_the_relay_streams_the_audio_back() {
    let b = start(&["--relay"], &[]).await;
    let g = grant(&b).await;
    for (i, path) in [
        "tts/cognitiveservices/websocket/v1",
        "cognitiveservices/websocket/v1",
    ]
    .iter()
    .enumerate()
    {
        let mut ws = connect(&relay_url(&g, path, "x=1"), None).await.unwrap();
        let id = format!("S{i}");
        let frames = synthesis_turn(&mut ws, &id).await;
        let audio = synthesized_audio(&frames, &id);
        assert_eq!(
            audio.len(),
            speech_token_broker::speech::SYNTHESIS_AUDIO_BYTES
        );
        // a second turn on the same connection (the SDK reuses it)
        let frames = synthesis_turn(&mut ws, &format!("{id}b")).await;
        assert!(!synthesized_audio(&frames, &format!("{id}b")).is_empty());
    }
    let seen = seen(&b).await;
    assert_eq!(seen.len(), 2);
    for (service, path, credential, ticket, _) in &seen {
        assert_eq!(service, "synthesis");
        assert!(path.ends_with("/cognitiveservices/websocket/v1"));
        assert_eq!(credential, "header", "the broker's credential, as a header");
        assert!(!ticket, "no ticket upstream");
    }
    // negative control: a direct connection with the ticket is refused by the service and
    // recorded as carrying it in the query
    let ep = g["endpoint"].as_str().unwrap();
    let direct = relay_url(&g, "tts/cognitiveservices/websocket/v1", "x=1").replace("/relay/", "/");
    assert!(direct.starts_with(&ep[..ep.find("/relay/").unwrap()]));
    assert_eq!(connect(&direct, None).await.err(), Some(401));
    let last = stats(&b).await["speechConnections"][2].clone();
    assert_eq!(last["verdict"], "malformed", "{last}");
    assert_eq!(last["credential"], "query");
    assert_eq!(last["ticket"], true);
    assert_eq!(last["status"], 401);
}

#[tokio::test]
async fn upstream_failures_reach_the_browser_side() {
    let b = start(&["--relay"], &[]).await;
    let u = ticket_url(&b).await;
    // the service closes mid-session with an error: its code and reason pass through
    set_behaviour(&b, json!({"dropAfterMs": 300, "closeCode": 1003})).await;
    let mut ws = connect(&u, None).await.unwrap();
    let close = close_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(u16::from(close.code), 1003);
    assert_eq!(close.reason.as_str(), "fake service failure");
    // the service refuses the upgrade: the relay answers 502 before upgrading
    set_behaviour(&b, json!({"refuseStatus": 503})).await;
    assert_eq!(connect(&u, None).await.err(), Some(502));
    let st = stats(&b).await;
    let conns = st["speechConnections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{st}");
    assert_eq!(conns[1]["status"], 503);
    assert_eq!(conns[1]["credential"], "header");
}

/// Opens the relay with the ticket in the query (as the SDK does) and an app-user credential in
/// the `Authorization` header (a native client or a proxy can send one; a browser's SDK cannot).
async fn connect_as(u: &str, origin: &str, user_bearer: &str) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = u.into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {user_bearer}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_ticket_presented_by_another_user_is_refused() {
    use common::entra::{fake_entra, sign, user_claims};
    let e = fake_entra().await;
    let mut args: Vec<String> = e.broker_args();
    args.extend(["--relay", "--allow-origin", "https://app.example.com"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = start(&refs, &[]).await;
    let alice = sign(&user_claims(&e, "alice-oid"));
    let bob = sign(&user_claims(&e, "bob-oid"));
    // Alice's ticket, minted for her authenticated token request
    let bearer = format!("Bearer {alice}");
    let grant = grant_with(
        &b,
        TOKEN,
        &[
            ("Origin", "https://app.example.com"),
            ("Authorization", &bearer),
        ],
    )
    .await;
    let endpoint = grant["endpoint"].as_str().unwrap().to_string();
    let t = grant["token"].as_str().unwrap().to_string();
    let origin = "https://app.example.com";
    // Found by a review: with a user token next to the ticket, the user check ran before the
    // relay's own refusals, so a method other than GET got 403/401 instead of 405, and a path
    // that is no SDK path 403 instead of 404 (README: "before the ticket is even read").
    let http = url(&endpoint, &t).replacen("ws://", "http://", 1);
    let not_sdk = b.url(&format!("/relay/not/sdk?Authorization=Bearer%20{t}"));
    for user in [bob.as_str(), "not.a.jwt"] {
        let c = common::client();
        let r = c
            .post(&http)
            .header("Origin", origin)
            .bearer_auth(user)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "POST with a user token");
        assert_eq!(r.headers()["allow"], "GET");
        let r = c
            .get(&not_sdk)
            .header("Origin", origin)
            .bearer_auth(user)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            404,
            "a path that is no SDK path, with a user token"
        );
    }
    // Bob presents Alice's ticket: refused before the upstream is contacted
    assert_eq!(
        connect_as(&url(&endpoint, &t), origin, &bob).await.err(),
        Some(403)
    );
    // an invalid user credential next to a valid ticket: refused
    assert_eq!(
        connect_as(&url(&endpoint, &t), origin, "not.a.jwt")
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        stats(&b).await["speechConnections"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // control: Alice herself (and a browser, which sends no user credential) get through
    let mut ws = connect_as(&url(&endpoint, &t), origin, &alice)
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    let mut ws = connect(&url(&endpoint, &t), Some(origin)).await.unwrap();
    ws.close(None).await.unwrap();
    // a native client with the ticket in the header (plain or in the SDK's aad# form) and no
    // user token: the ticket decides, as without --auth entra
    let bare = format!("{endpoint}?language=en-US");
    for header_ticket in [t.clone(), format!("aad#/subscriptions/x#{t}")] {
        let mut ws = connect_as(&bare, origin, &header_ticket).await.unwrap();
        ws.close(None).await.unwrap();
    }
    assert_eq!(
        stats(&b).await["speechConnections"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// The close code the relay ends `ws` with within `within` (`None`: the connection ended without
/// a close frame).
async fn close_code(ws: &mut Ws, within: Duration) -> Option<u16> {
    close_frame(ws, within).await.map(|c| u16::from(c.code))
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_the_session_with_1009() {
    let b = start(&["--relay", "--relay-max-frame", "4096"], &[]).await;
    let u = ticket_url(&b).await;
    // control: an audio-sized frame under the limit passes; the session stays open
    let mut ok = connect(&u, None).await.unwrap();
    ok.send(common::speech::audio_frame("R1", &[0u8; 3200]))
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(800), ok.next()).await;
    assert!(quiet.is_err(), "session still open: {quiet:?}");
    // over the limit: "message too big" (RFC 6455 §7.4.1), not a silent drop
    let mut big = connect(&u, None).await.unwrap();
    big.send(Message::Binary(vec![0u8; 8000].into()))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut big, Duration::from_secs(5)).await,
        Some(1009)
    );
}

/// The HTTP answer to a refused upgrade of `u`: status, `Retry-After`, JSON body.
async fn refusal(u: &str) -> (u16, Option<String>, Value) {
    match tokio_tungstenite::connect_async(u).await {
        Ok(_) => panic!("upgrade of {u} accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = r
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (r.status().as_u16(), retry_after, body)
        }
        Err(e) => panic!("{u}: {e}"),
    }
}

/// The Speech SDK's WebSocket paths (SDK 1.52's connection factories), as the relay must serve
/// them; written out here so the test checks the relay's list rather than repeating it.
const SDK_PATHS: [&str; 8] = [
    "speech/recognition/conversation/cognitiveservices/v1",
    "speech/recognition/interactive/cognitiveservices/v1",
    "speech/recognition/dictation/cognitiveservices/v1",
    "stt/speech/universal/v2",
    "stt/speech/universal/v1",
    "speech/translation/cognitiveservices/v1",
    "tts/cognitiveservices/websocket/v1",
    "cognitiveservices/websocket/v1",
];

#[tokio::test]
async fn only_the_sdks_websocket_paths_are_relayed() {
    let b = start(&["--relay"], &[]).await;
    let g = grant(&b).await;
    let rec = "speech/recognition/conversation/cognitiveservices/v1";
    let ticket = g["token"].as_str().unwrap();
    for path in [
        "foo/bar".to_string(),
        "%2e%2e/%2e%2e/sts/v1.0/issueToken".into(),
        "speech/recognition/%2e%2e/%2e%2e/tts/cognitiveservices/websocket/v1".into(),
        "speech/recognition/../recognition/conversation/cognitiveservices/v1".into(),
        // a query or fragment smuggled in the (decoded) path: the ticket would go upstream
        format!("{rec}%3FAuthorization%3DBearer%2520{ticket}"),
        format!("{rec}%23x"),
        format!("{rec}%2F..%2F..%2Fsts"),
        "speech%5Crecognition%5Cconversation%5Ccognitiveservices%5Cv1".into(),
        format!("{rec}%5C"),
        format!("{rec}%2500"),
        format!("{rec}/"),
        format!("{rec}/x"),
        "stt/speech/universal/v3".into(),
        // real Speech paths the SDK does not open through a relay endpoint
        "speech/recognition/multiaudio".into(),
        "cognitiveservices/voices/list".into(),
        "sts/v1.0/issueToken".into(),
    ] {
        let (status, _, body) = refusal(&relay_url(&g, &path, "language=en-US")).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"], "not-found", "{path}: {body}");
    }
    assert!(seen(&b).await.is_empty(), "nothing reached the upstream");
    // every SDK path is relayed, upstream under its one canonical spelling
    for path in SDK_PATHS
        .iter()
        .copied()
        .chain(["Speech/Recognition/Conversation/CognitiveServices/V1"])
    {
        let mut ws = connect(&relay_url(&g, path, "language=en-US"), None)
            .await
            .unwrap_or_else(|s| panic!("{path}: {s}"));
        ws.close(None).await.unwrap();
    }
    let paths: Vec<String> = seen(&b).await.into_iter().map(|c| c.1).collect();
    let mut want: Vec<String> = SDK_PATHS.iter().map(|p| format!("/{p}")).collect();
    want.push(format!("/{rec}"));
    assert_eq!(paths, want);
}

/// Found by an outside review: a relay path that is not UTF-8 got axum's plain-text 400 (no
/// JSON, no `no-store`) instead of the documented 404 `not-found`, and a method other than GET
/// got 401 (the ticket was read first) instead of the documented 405 with `Allow: GET`.
#[tokio::test]
async fn relay_paths_that_are_not_utf8_and_other_methods_get_the_documented_errors() {
    let b = start(&["--relay"], &[]).await;
    let c = common::client();
    let r = c.get(b.url("/relay/%ff")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not-found", "{body}");
    let rec = "/relay/speech/recognition/conversation/cognitiveservices/v1";
    for method in ["PUT", "POST", "DELETE", "HEAD", "PATCH"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c.request(method.clone(), b.url(rec)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "GET", "{method}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{method}");
    }
    // Control: a GET without a ticket is still refused for the missing ticket.
    let r = c.get(b.url(rec)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A fake upstream that sends a small text frame every `every` and never reads.
async fn chatty_upstream(every: Duration) -> String {
    fake_upstream(move |mut ws| async move {
        while ws
            .send(Message::Text("Path:speech.hypothesis\r\n\r\n{}".into()))
            .await
            .is_ok()
        {
            tokio::time::sleep(every).await;
        }
    })
    .await
    .0
}

#[tokio::test]
async fn only_browser_frames_keep_a_session_from_idling() {
    let (sts, _) = fake_sts().await;
    let up = chatty_upstream(Duration::from_millis(100)).await;
    let b = key_relay(&sts, &up, &["--relay-idle-timeout", "1"]).await;
    // the service talks all the time, the browser says nothing: closed as idle all the same
    let mut ws = connect(&key_ticket_url(&b).await, None).await.unwrap();
    let close = close_frame(&mut ws, Duration::from_secs(6))
        .await
        .expect("a close frame");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "idle timeout");
    // control: a browser that keeps sending stays connected past the idle timeout
    let mut ws = connect(&key_ticket_url(&b).await, None).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        ws.send(common::speech::audio_frame("R1", &[0u8; 320]))
            .await
            .unwrap();
        let read = tokio::time::timeout(Duration::from_millis(200), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(c))) => return c,
                    None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(
            read.is_err(),
            "closed while the browser was sending: {read:?}"
        );
    }
}

/// A fake upstream that floods binary frames (as fast as the relay takes them) and reports the
/// close code the relay ends its side with (`None`: ended without a close frame).
async fn flooding_upstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<Option<u16>>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (url, _) = fake_upstream(move |ws| {
        let tx = tx.clone();
        async move {
            let (mut sink, mut stream) = ws.split();
            let flood = tokio::spawn(async move {
                let frame = Message::Binary(vec![0u8; 60_000].into());
                while sink.send(frame.clone()).await.is_ok() {}
            });
            let code = loop {
                match stream.next().await {
                    Some(Ok(Message::Close(c))) => break c.map(|c| u16::from(c.code)),
                    None | Some(Err(_)) => break None,
                    Some(Ok(_)) => {}
                }
            };
            flood.abort();
            let _ = tx.send(code);
        }
    })
    .await;
    (url, rx)
}

/// A relayed session whose browser side stopped reading while the service floods it: the
/// broker, the still-open (unread) browser socket and the service's report of how it was closed.
async fn stalled_session(
    extra: &[&str],
) -> (
    RunningBroker,
    Ws,
    tokio::sync::mpsc::UnboundedReceiver<Option<u16>>,
) {
    let (sts, _) = fake_sts().await;
    let (up, closes) = flooding_upstream().await;
    let b = key_relay(&sts, &up, extra).await;
    let ws = connect(&key_ticket_url(&b).await, None).await.unwrap();
    (b, ws, closes)
}

#[tokio::test]
async fn a_browser_that_stops_reading_is_still_closed_at_the_duration_limit() {
    let (b, mut ws, mut closes) =
        stalled_session(&["--relay-max-duration", "1", "--relay-max-sessions", "1"]).await;
    // the browser reads nothing: the relay's sends to it block, the deadline must still fire
    let upstream_close = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .expect("the relay closed the service's side at the duration limit");
    assert_eq!(upstream_close, Some(Some(1000)));
    // the browser reads again: after the backlog, the duration limit's close (1000)
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(10)).await,
        Some(1000)
    );
    // and the session's slot is free again
    let u = key_ticket_url(&b).await;
    let freed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match connect(&u, None).await {
                Ok(ws) => return ws,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert!(freed.is_ok(), "the session's slot was not freed");
}

#[tokio::test]
async fn shutdown_closes_a_session_whose_browser_stopped_reading() {
    let (b, _ws, mut closes) = stalled_session(&[]).await;
    // let the relay's sends to the browser block
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);
    let upstream_close = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .expect("the relay closed the service's side on shutdown");
    assert_eq!(upstream_close, Some(Some(1001)));
}

#[tokio::test]
async fn without_user_authentication_the_session_cap_is_per_client() {
    let b = start(
        &[
            "--relay",
            "--relay-max-sessions-per-user",
            "1",
            "--trust-proxy",
            "127.0.0.1/32",
        ],
        &[],
    )
    .await;
    // each client's ticket from the token route, the client named by the trusted proxy
    let open = |g: &Value| relay_url(g, "stt/speech/universal/v2", "language=en-US");
    let client = |ip: &'static str| {
        let b = &b;
        async move { grant_with(b, TOKEN, &[("X-Forwarded-For", ip)]).await }
    };
    let _a = connect(&open(&client("203.0.113.1").await), None)
        .await
        .unwrap();
    let _b = connect(&open(&client("203.0.113.2").await), None)
        .await
        .expect("another client has a cap of its own");
    let _c = connect(&open(&client("2001:db8:1:2::a").await), None)
        .await
        .unwrap();
    // the same client again (IPv6: the same /64): over its cap, 429 with when to retry
    for again in ["203.0.113.1", "2001:db8:1:2::b"] {
        let (status, retry_after, body) = refusal(&open(&client(again).await)).await;
        assert_eq!(status, 429, "{again}: {body}");
        assert_eq!(body["error"], "rate-limited", "{body}");
        let secs = body["retryAfter"].as_u64().expect("retryAfter");
        assert!(secs >= 1, "{body}");
        assert_eq!(retry_after, Some(secs.to_string()));
    }
}

#[tokio::test]
async fn a_ticket_lives_as_long_as_its_expires_in_says() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let b = start(&["--relay", "--relay-ticket-ttl", "5"], &[]).await;
    // ask late in a wall-clock second, where an expiry in whole seconds would cut most of it
    loop {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if (800..900).contains(&ms) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = tokio::time::Instant::now();
    let g = grant(&b).await;
    let answered = tokio::time::Instant::now();
    let expires_in = Duration::from_secs_f64(g["expiresIn"].as_f64().unwrap());
    assert!(expires_in <= Duration::from_secs(5), "{expires_in:?}");
    let u = relay_url(&g, "stt/speech/universal/v2", "language=en-US");
    // still good shortly before expiresIn runs out (counted from the request) ... The margin
    // (time for the connect and the upgrade on a loaded machine) must stay under the ~0.8 s an
    // expiry in whole seconds loses when asked this late in a second, or the test could not fail.
    tokio::time::sleep_until(asked + expires_in - Duration::from_millis(600)).await;
    let mut ws = connect(&u, None)
        .await
        .expect("the ticket is good for as long as expiresIn says");
    ws.close(None).await.unwrap();
    // ... and refused once it has (counted from the answer)
    tokio::time::sleep_until(answered + expires_in + Duration::from_millis(50)).await;
    assert_eq!(connect(&u, None).await.err(), Some(401));
}

#[tokio::test]
async fn a_service_that_does_not_answer_in_time_is_an_upstream_failure() {
    // a service that accepts the connection and never answers the upgrade
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("ws://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (sts, _) = fake_sts().await;
    let b = key_relay(&sts, &up, &["--upstream-timeout", "1"]).await;
    let u = key_ticket_url(&b).await;
    let t0 = std::time::Instant::now();
    let (status, _, body) = refusal(&u).await;
    // as the token route answers an upstream timeout: 502 `upstream`, within --upstream-timeout
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "upstream");
    assert_eq!(body["detail"], "Speech service timed out");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

/// One ticket could open any number of upstream sessions one after another (3 858 in 5 s in an
/// outside review), each with the broker's own credential: the session caps count only the
/// sessions open at once. Each upgrade now draws from the `--rate-limit` bucket of the ticket's
/// subject (its own bucket, beside the token route's), refused with 429 and `Retry-After`
/// before the upstream is reached.
#[tokio::test]
async fn relay_connections_are_rate_limited_per_ticket_subject() {
    let b = start(&["--relay", "--rate-limit", "60", "--rate-burst", "3"], &[]).await;
    let u = ticket_url(&b).await;
    for n in 0..3 {
        let mut ws = connect(&u, None)
            .await
            .unwrap_or_else(|e| panic!("connection {n}: {e}"));
        let _ = ws.close(None).await;
    }
    let (status, retry_after, body) = refusal(&u).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate-limited", "{body}");
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    // the refused upgrade never reached the Speech service
    let st = stats(&b).await;
    assert_eq!(st["speechConnections"].as_array().unwrap().len(), 3, "{st}");
    // Negative control: without a limit, the same churn is not refused.
    let free = start(&["--relay", "--rate-limit", "0"], &[]).await;
    let u = ticket_url(&free).await;
    for n in 0..5 {
        let mut ws = connect(&u, None)
            .await
            .unwrap_or_else(|e| panic!("unlimited, connection {n}: {e}"));
        let _ = ws.close(None).await;
    }
}
