//! Runs the real binary in every mode with the most verbose logging (RUST_LOG=trace), issues
//! tokens, uses the fake Speech service, triggers upstream failures, and asserts that no token,
//! key, client secret or identity header appears in what it logged. Positive controls prove the
//! capture works (each issued token's fingerprint is in the log) and that the search would find a
//! secret if it were there.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::binary::run_binary;
use common::{client, fake_jwt, random_hex, serve_fake};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Every way a secret could show up: whole, and each JWT segment longer than 20 characters
/// except the (public, constant) JOSE header.
fn needles(secret: &str) -> Vec<String> {
    let mut v = vec![secret.to_string()];
    let parts: Vec<&str> = secret.split(['.', '#']).collect();
    for p in parts.iter().skip(1) {
        if p.len() > 20 {
            v.push(p.to_string());
        }
    }
    if secret.len() >= 24 {
        v.push(secret[..secret.len() / 2].to_string());
        v.push(secret[secret.len() / 2..].to_string());
    }
    v
}

fn leaks(log: &str, secret: &str) -> Vec<String> {
    needles(secret)
        .into_iter()
        .filter(|n| log.contains(n.as_str()))
        .collect()
}

fn assert_clean(mode: &str, log: &str, secrets: &[String], served: &[String]) {
    assert!(log.contains("serving"), "{mode}: the log was captured");
    for s in secrets {
        let found = leaks(log, s);
        assert!(
            found.is_empty(),
            "{mode}: secret material in the log: {found:?}"
        );
        // negative control: the same search finds the secret once it is there
        let planted = format!("{log}\n2026-01-01T00:00:00Z INFO something token={s}\n");
        assert!(
            !leaks(&planted, s).is_empty(),
            "{mode}: the search must find a planted secret"
        );
    }
    for t in served {
        let fp = speech_token_broker::secret::fingerprint(t);
        assert!(
            log.contains(&fp),
            "{mode}: the issued token's fingerprint {fp} is logged"
        );
    }
}

async fn token(c: &reqwest::Client, base: &str) -> (StatusCode, Value) {
    let r = c
        .get(format!("{base}/api/speech-token"))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn dev_mode_logs_no_tokens() {
    let run = run_binary(&["--mode", "dev", "--ttl", "30"], &[]).await;
    let c = client();
    let mut served = Vec::new();
    let (st, v) = token(&c, &run.base).await;
    assert_eq!(st, 200);
    served.push(v["token"].as_str().unwrap().to_string());
    // a new token after a ttl change
    c.post(format!("{}/admin/ttl", run.base))
        .json(&json!({"seconds": 20}))
        .send()
        .await
        .unwrap();
    let (_, v2) = token(&c, &run.base).await;
    served.push(v2["token"].as_str().unwrap().to_string());
    // a recognition turn on the fake Speech service with the token in the URL
    let ws_base = run.base.replace("http://", "ws://");
    let url = format!(
        "{ws_base}/speech/recognition/conversation/cognitiveservices/v1?language=en-US&Authorization=Bearer%20{}&X-ConnectionId=1",
        served[1]
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(
        "Path:speech.config\r\nX-RequestId:R\r\n\r\n{}".into(),
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        let head = b"Path:audio\r\nX-RequestId:R";
        let mut f = (head.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(head);
        f.extend_from_slice(&[0; 64]);
        ws.send(Message::Binary(f.into())).await.unwrap();
    }
    let mut n = 0;
    while n < 6 {
        if let Some(Ok(Message::Text(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            n += 1;
        }
    }
    ws.close(None).await.unwrap();
    // rejected tokens (old key's token, a foreign token) are not logged either
    let (foreign, _) =
        speech_token_broker::devjwt::DevSigner::new_random().sign(common::now_unix(), 600);
    for t in [&foreign, &served[0]] {
        let url = format!("{ws_base}/speech/recognition/conversation/cognitiveservices/v1?Authorization=Bearer%20{t}");
        let _ = tokio_tungstenite::connect_async(url).await;
    }
    let log = run.stop().await;
    let mut secrets = served.clone();
    secrets.push(foreign);
    assert_clean("dev", &log, &secrets, &served);
    assert!(
        log.contains("verdict=\"accepted\"") || log.contains("verdict=accepted"),
        "WS attempts are logged"
    );
}

#[tokio::test]
async fn key_mode_logs_no_key_or_token() {
    let key = random_hex(16);
    let calls = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let (k2, c2, i2) = (key.clone(), Arc::clone(&calls), Arc::clone(&issued));
    let addr = serve_fake(Router::new().route(
        "/sts/v1.0/issueToken",
        post(move |headers: axum::http::HeaderMap| {
            let (k, c, i) = (k2.clone(), Arc::clone(&c2), Arc::clone(&i2));
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    // first call fails as with a bad key: the 401 body echoes nothing secret,
                    // but the broker must not log the request either
                    return (
                        StatusCode::UNAUTHORIZED,
                        "Access denied due to invalid subscription key",
                    )
                        .into_response();
                }
                assert_eq!(headers["ocp-apim-subscription-key"], k.as_str());
                let t = fake_jwt(600, "k");
                i.lock().unwrap().push(t.clone());
                t.into_response()
            }
        }),
    ))
    .await;
    let run = run_binary(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            &format!("http://{addr}"),
        ],
        &[("SPEECH_KEY", &key)],
    )
    .await;
    let c = client();
    assert_eq!(token(&c, &run.base).await.0, 502);
    // the failure is remembered for a few seconds (cache::FAILURE_HOLD_MAX), then retried
    let t0 = std::time::Instant::now();
    let v = loop {
        let (st, v) = token(&c, &run.base).await;
        if st == 200 {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(8), "still failing");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let served = vec![v["token"].as_str().unwrap().to_string()];
    let log = run.stop().await;
    let mut secrets = served.clone();
    secrets.push(key);
    assert_clean("key", &log, &secrets, &served);
    assert!(
        log.contains("issueToken answered 401"),
        "the failure itself is logged"
    );
}

#[tokio::test]
async fn entra_modes_log_no_secret_or_token() {
    let secret = format!("s~{}", random_hex(16));
    let identity_header = random_hex(16);
    let access = fake_jwt(3599, "entra");
    let (s2, a2, h2, a3) = (
        secret.clone(),
        access.clone(),
        identity_header.clone(),
        access.clone(),
    );
    let addr = serve_fake(
        Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(move |axum::Form(f): axum::Form<HashMap<String, String>>| {
                    let (s, a) = (s2.clone(), a2.clone());
                    async move {
                        if f.get("client_secret") != Some(&s) {
                            return (
                                StatusCode::UNAUTHORIZED,
                                Json(json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."})),
                            )
                                .into_response();
                        }
                        Json(json!({"token_type":"Bearer","expires_in":3599,"access_token":a})).into_response()
                    }
                }),
            )
            .route(
                "/msi/token",
                get(move |headers: axum::http::HeaderMap| {
                    let (h, a) = (h2.clone(), a3.clone());
                    async move {
                        if headers.get("x-identity-header").and_then(|v| v.to_str().ok()) != Some(h.as_str()) {
                            return StatusCode::UNAUTHORIZED.into_response();
                        }
                        let r: Response = Json(json!({"access_token":a,"expires_on":(common::now_unix()+3599).to_string(),"token_type":"Bearer","resource":"https://cognitiveservices.azure.com"})).into_response();
                        r
                    }
                }),
            ),
    )
    .await;
    let base = format!("http://{addr}");
    let rid =
        "/subscriptions/0/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/sp";
    let c = client();

    // client credentials: one failing (wrong secret) and one working broker
    let bad = run_binary(
        &[
            "--mode",
            "entra",
            "--authority",
            &base,
            "--resource-id",
            rid,
            "--region",
            "westeurope",
        ],
        &[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "wrong-but-still-secret-123456"),
        ],
    )
    .await;
    assert_eq!(token(&c, &bad.base).await.0, 502);
    let bad_log = bad.stop().await;
    assert_clean(
        "entra-bad-secret",
        &bad_log,
        &["wrong-but-still-secret-123456".to_string()],
        &[],
    );

    let run = run_binary(
        &[
            "--mode",
            "entra",
            "--authority",
            &base,
            "--resource-id",
            rid,
            "--region",
            "westeurope",
        ],
        &[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", &secret),
        ],
    )
    .await;
    let (st, v) = token(&c, &run.base).await;
    assert_eq!(st, 200);
    let served = vec![v["token"].as_str().unwrap().to_string()];
    let log = run.stop().await;
    assert_clean(
        "entra-cc",
        &log,
        &[served[0].clone(), access.clone(), secret.clone()],
        &served,
    );

    // managed identity via IDENTITY_ENDPOINT
    let run = run_binary(
        &[
            "--mode",
            "entra",
            "--endpoint",
            "https://sp.cognitiveservices.azure.com",
        ],
        &[
            ("IDENTITY_ENDPOINT", &format!("{base}/msi/token")),
            ("IDENTITY_HEADER", &identity_header),
        ],
    )
    .await;
    let (st, v) = token(&c, &run.base).await;
    assert_eq!(st, 200);
    let served = vec![v["token"].as_str().unwrap().to_string()];
    let log = run.stop().await;
    assert_clean(
        "entra-mi",
        &log,
        &[access.clone(), identity_header.clone()],
        &served,
    );
}

#[tokio::test]
async fn key_mode_without_key_exits_2() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_speech-token-broker"))
        .args([
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SPEECH_KEY"));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn user_auth_logs_one_audit_line_per_issued_token_and_never_the_user_token() {
    let e = common::entra::fake_entra().await;
    let mut args: Vec<String> = vec!["--mode".into(), "dev".into()];
    args.extend(e.broker_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_binary(&refs, &[]).await;
    let c = client();
    let user = common::entra::sign(&common::entra::user_claims(&e, "oid-audit-1"));
    let mut expired = common::entra::user_claims(&e, "oid-audit-2");
    expired["exp"] = json!(common::now_unix() - 1000);
    let expired = common::entra::sign(&expired);
    let mut served = Vec::new();
    for _ in 0..2 {
        let r = c
            .get(format!("{}/api/speech-token", run.base))
            .header("Authorization", format!("Bearer {user}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        served.push(v["token"].as_str().unwrap().to_string());
    }
    let r = c
        .get(format!("{}/api/speech-token", run.base))
        .header("Authorization", format!("Bearer {expired}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let log = run.stop().await;
    let mut secrets = served.clone();
    secrets.push(user.clone());
    secrets.push(expired.clone());
    assert_clean("dev --auth entra", &log, &secrets, &served);
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("token issued") && l.contains("oid-audit-1"))
        .collect();
    assert_eq!(audit.len(), 2, "one audit line per issued token:\n{log}");
    assert!(audit[0].contains(common::entra::TENANT), "{}", audit[0]);
    assert!(
        !log.contains("someone@example.com"),
        "no preferred_username in logs"
    );
}

#[tokio::test]
async fn relay_logs_no_ticket_and_no_upstream_token() {
    let run = run_binary(&["--mode", "dev", "--relay"], &[]).await;
    let c = client();
    let (st, v) = token(&c, &run.base).await;
    assert_eq!(st, 200);
    let ticket = v["token"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("rt1."));
    let endpoint = v["endpoint"].as_str().unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{endpoint}?language=en-US&Authorization=Bearer%20{ticket}"
    ))
    .await
    .unwrap();
    ws.send(Message::Text(
        "Path:speech.config\r\nX-RequestId:R\r\n\r\n{}".into(),
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        let head = b"Path:audio\r\nX-RequestId:R";
        let mut f = (head.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(head);
        f.extend_from_slice(&[0; 64]);
        ws.send(Message::Binary(f.into())).await.unwrap();
    }
    let mut n = 0;
    while n < 6 {
        if let Some(Ok(Message::Text(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            n += 1;
        }
    }
    ws.close(None).await.unwrap();
    // a tampered ticket is refused and not logged either
    let tampered = format!("{ticket}x");
    let _ =
        tokio_tungstenite::connect_async(format!("{endpoint}?Authorization=Bearer%20{tampered}"))
            .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = run.stop().await;
    assert_clean(
        "dev --relay",
        &log,
        &[ticket.clone(), tampered],
        std::slice::from_ref(&ticket),
    );
    assert!(
        log.contains("relay session"),
        "one line per session:\n{log}"
    );
    // the upstream (dev) token the relay used never appears: no JWT at all in the log
    assert!(
        !log.lines()
            .any(|l| l.contains("eyJ") && l.matches('.').count() >= 2 && l.contains("eyJhbGci")),
        "a JWT in the log"
    );
}

/// A client that keeps opening connections past `--max-connections` wrote one WARN line per
/// refused connection (an outside review flooded the log this way). The refusals are now told
/// at most once a second, with how many there were.
#[tokio::test]
async fn refused_connections_are_logged_at_most_once_a_second() {
    let run = run_binary(&["--mode", "dev", "--max-connections", "1"], &[]).await;
    let addr = run.base.trim_start_matches("http://").to_string();
    // The one slot, held.
    let _held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..200 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            drop(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.sigterm();
    let log = run.exited().await;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection limit reached"))
        .collect();
    // Negative control: the refusals happened and were told.
    assert!(!lines.is_empty(), "{log}");
    assert!(lines.len() <= 3, "{} lines: {lines:#?}", lines.len());
    assert!(lines[0].contains("refused="), "{}", lines[0]);
}
