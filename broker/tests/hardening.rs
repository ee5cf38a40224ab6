//! Deployment hardening: host allow-list, admin routes, trusted proxies, upstream failure
//! handling, server limits, health/readiness, and the fake Speech service's limits.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::binary::run_binary;
use common::speech::{close_frame, connect, Ws};
use common::{admin, fake_jwt, get, get_with, grant, serve_fake, start, TOKEN};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// issueToken fake with a scripted behaviour.
#[derive(Default)]
struct Sts {
    calls: AtomicUsize,
    /// 0 = answer a token; otherwise this status.
    status: AtomicU64,
    /// Delay before answering, ms.
    delay_ms: AtomicU64,
    lifetime: AtomicU64,
    /// Answer this raw body instead of a JWT.
    raw: Mutex<Option<String>>,
}

async fn issue(State(s): State<Arc<Sts>>) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let d = s.delay_ms.load(Ordering::SeqCst);
    if d > 0 {
        tokio::time::sleep(Duration::from_millis(d)).await;
    }
    let st = s.status.load(Ordering::SeqCst);
    if st != 0 {
        return (StatusCode::from_u16(st as u16).unwrap(), "no").into_response();
    }
    if let Some(raw) = s.raw.lock().unwrap().clone() {
        return raw.into_response();
    }
    let life = match s.lifetime.load(Ordering::SeqCst) {
        0 => 600,
        n => n,
    };
    fake_jwt(life, &common::random_hex(8)).into_response()
}

async fn sts() -> (Arc<Sts>, String) {
    let s = Arc::new(Sts::default());
    let addr = serve_fake(
        Router::new()
            .route("/sts/v1.0/issueToken", post(issue))
            .with_state(Arc::clone(&s)),
    )
    .await;
    (s, format!("http://{addr}"))
}

async fn key_broker(base: &str, extra: &[&str]) -> speech_token_broker::RunningBroker {
    let mut args = vec![
        "--mode",
        "key",
        "--region",
        "westeurope",
        "--sts-base",
        base,
    ];
    args.extend_from_slice(extra);
    start(&args, &[("SPEECH_KEY", "k")]).await
}

async fn raw_get(addr: std::net::SocketAddr, path: &str, host: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

// ---------------------------------------------------------------- Host allow-list

#[tokio::test]
async fn key_mode_refuses_a_rebound_host() {
    let (_s, base) = sts().await;
    let b = key_broker(&base, &[]).await;
    let (status, text) = raw_get(b.addr, "/api/speech-token", "rebind.attacker.example", "").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("forbidden-host"), "{text}");
    assert!(!text.contains("\"token\""), "{text}");
    let (status, _) = raw_get(b.addr, "/api/speech-token", &b.addr.to_string(), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn key_mode_does_not_trust_its_own_loopback_origins() {
    let (_s, base) = sts().await;
    let b = key_broker(&base, &[]).await;
    let own = format!("http://{}", b.addr);
    let r = get_with(&b, TOKEN, &[("Origin", &own)]).await;
    assert_eq!(r.status(), 403);
}

// ---------------------------------------------------------------- admin routes

#[tokio::test]
async fn admin_refuses_proxied_requests() {
    let b = start(&[], &[]).await;
    for h in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "Forwarded: for=203.0.113.9\r\n",
        "X-Forwarded-Host: app.example.com\r\n",
        "X-Forwarded-Proto: https\r\n",
    ] {
        let (status, text) = raw_get(b.addr, "/admin/stats", &b.addr.to_string(), h).await;
        assert_eq!(status, 403, "{h}: {text}");
    }
    let (status, _) = raw_get(b.addr, "/admin/stats", &b.addr.to_string(), "").await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------- trusted proxies

#[tokio::test]
async fn clients_behind_a_trusted_proxy_get_their_own_buckets() {
    let b = start(
        &[
            "--rate-limit",
            "6",
            "--rate-burst",
            "2",
            "--trust-proxy",
            "127.0.0.0/8",
        ],
        &[],
    )
    .await;
    let ask = |xff: &'static str| {
        let b = &b;
        async move {
            get_with(b, TOKEN, &[("X-Forwarded-For", xff)])
                .await
                .status()
        }
    };
    assert_eq!(ask("203.0.113.1").await, 200);
    assert_eq!(ask("198.51.100.7, 203.0.113.1").await, 200);
    assert_eq!(ask("203.0.113.1").await, 429);
    // another client behind the same proxy
    assert_eq!(ask("203.0.113.2").await, 200);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_without_trust_proxy() {
    let b = start(&["--rate-limit", "6", "--rate-burst", "2"], &[]).await;
    for (i, xff) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let s = get_with(&b, TOKEN, &[("X-Forwarded-For", xff)])
            .await
            .status();
        assert_eq!(s, if i < 2 { 200 } else { 429 }, "{xff}");
    }
}

// ---------------------------------------------------------------- upstream failures

#[tokio::test]
async fn an_upstream_failure_is_cached_for_a_few_seconds() {
    let (s, base) = sts().await;
    s.status.store(401, Ordering::SeqCst);
    let b = key_broker(&base, &["--rate-limit", "0"]).await;
    for _ in 0..10 {
        let r = get(&b, TOKEN).await;
        assert_eq!(r.status(), 502);
    }
    assert_eq!(
        s.calls.load(Ordering::SeqCst),
        1,
        "one upstream call for 10 requests"
    );
    // after the (jittered, a few seconds) failure window the upstream is asked again
    s.status.store(0, Ordering::SeqCst);
    let t0 = Instant::now();
    loop {
        let r = get(&b, TOKEN).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "failure cached too long"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_refresh_serves_the_still_valid_token() {
    let (s, base) = sts().await;
    // 20 s token: refreshed 12 s before expiry (60 % cap), i.e. after 8 s.
    s.lifetime.store(20, Ordering::SeqCst);
    let b = key_broker(&base, &["--rate-limit", "0"]).await;
    let first = grant(&b).await;
    s.status.store(500, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(8300)).await;
    let v = grant(&b).await;
    assert_eq!(v["token"], first["token"]);
    let e = v["expiresIn"].as_f64().unwrap();
    assert!(e > 10.0 && e < 12.0, "true remaining lifetime, got {e}");
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_slow_refresh_is_awaited_at_most_two_seconds() {
    let (s, base) = sts().await;
    s.lifetime.store(20, Ordering::SeqCst);
    let b = key_broker(&base, &["--rate-limit", "0", "--upstream-timeout", "9"]).await;
    let first = grant(&b).await;
    s.delay_ms.store(6000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(8300)).await;
    let t0 = Instant::now();
    let v = grant(&b).await;
    let waited = t0.elapsed();
    assert_eq!(v["token"], first["token"]);
    assert!(waited < Duration::from_millis(2600), "waited {waited:?}");
}

// ---------------------------------------------------------------- the engine's token rule

#[tokio::test]
async fn the_broker_refuses_what_the_client_would_refuse() {
    let (s, base) = sts().await;
    // the browser client refuses `'` in a token; the broker must not hand one out
    *s.raw.lock().unwrap() = Some("eyJh'bc.def.ghi".into());
    let b = key_broker(&base, &["--rate-limit", "0"]).await;
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 502);
}

// ---------------------------------------------------------------- health and readiness

#[tokio::test]
async fn healthz_and_readyz() {
    let (s, base) = sts().await;
    let b = key_broker(&base, &["--rate-limit", "0"]).await;
    let r = get(&b, "/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = get(&b, "/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("eyJ"),
        "readyz must not show the token: {body}"
    );

    let (s2, base2) = sts().await;
    s2.status.store(401, Ordering::SeqCst);
    let b2 = key_broker(&base2, &["--rate-limit", "0"]).await;
    let r = get(&b2, "/readyz").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let _ = s;
}

// ---------------------------------------------------------------- server limits

#[tokio::test]
async fn a_slowloris_connection_is_closed() {
    let b = start(&["--header-timeout", "1"], &[]).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return 0usize,
                Ok(n) => {
                    // a 408 is fine too; keep reading until the close
                    let _ = n;
                }
            }
        }
    })
    .await
    .expect("the broker closed the connection");
    assert_eq!(n, 0);
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let b = start(&["--header-timeout", "1"], &[]).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle keep-alive connection stayed open");
}

#[tokio::test]
async fn connections_are_capped() {
    let b = start(&["--max-connections", "2"], &[]).await;
    let _c1 = TcpStream::connect(b.addr).await.unwrap();
    let _c2 = TcpStream::connect(b.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c3 = TcpStream::connect(b.addr).await.unwrap();
    let _ = c3
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c3.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "third connection was served"
    );
    drop(_c1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(&b, "/healthz").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_request_has_a_deadline() {
    let b = start(&["--request-timeout", "1"], &[]).await;
    admin(&b, "/admin/slow", serde_json::json!({"ms": 4000})).await;
    let t0 = Instant::now();
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(t0.elapsed() < Duration::from_millis(2500));
    // Found by an outside review: the contract's 503s carry `Retry-After` (README: "429/503
    // with Retry-After"), this one had none.
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "timeout");
    assert_eq!(body["retryAfter"], 1);
}

/// Found by an outside review: a preflight's `Access-Control-Request-Headers` was filtered with
/// a check against every name already kept, so one unauthenticated preflight with tens of
/// thousands of distinct `x-` names held a worker for seconds (past `--request-timeout`: the
/// loop never yields) and was echoed back whole. At most `MAX_PREFLIGHT_HEADERS` names are
/// granted now: far more than any app sends; a preflight asking for more fails in the browser
/// as it should.
#[tokio::test]
async fn a_preflight_grants_a_bounded_list_of_headers() {
    use speech_token_broker::origin::MAX_PREFLIGHT_HEADERS;
    let b = start(&["--allow-origin", "https://app.example"], &[]).await;
    let asked: Vec<String> = std::iter::once("authorization".to_string())
        .chain((0..20_000).map(|i| format!("x-h{i}")))
        .collect();
    let r = common::client()
        .request(reqwest::Method::OPTIONS, b.url(TOKEN))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", asked.join(", "))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let granted: Vec<String> = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .split(", ")
        .map(str::to_string)
        .collect();
    assert_eq!(granted.len(), MAX_PREFLIGHT_HEADERS);
    assert_eq!(granted[..], asked[..MAX_PREFLIGHT_HEADERS]);
    // Control: an app's few headers are granted as asked, duplicates once.
    let r = common::client()
        .request(reqwest::Method::OPTIONS, b.url(TOKEN))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header(
            "Access-Control-Request-Headers",
            "authorization, x-session, X-Session, x-trace, accept-language",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "authorization, x-session, x-trace"
    );
}

/// The deadline's 503 reaches a cross-origin page as an `http` error with its status, not as an
/// opaque network failure: it carries the same CORS headers as every other API answer.
#[tokio::test]
async fn the_deadline_answer_carries_cors_for_an_allowed_origin() {
    let b = start(
        &[
            "--request-timeout",
            "1",
            "--allow-origin",
            "https://app.example",
        ],
        &[],
    )
    .await;
    admin(&b, "/admin/slow", serde_json::json!({"ms": 4000})).await;
    let r = get_with(&b, TOKEN, &[("origin", "https://app.example")]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://app.example")
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("retry-after"));
    assert!(r.headers().get_all("vary").iter().any(|v| v == "Origin"));
    // control: another origin is refused at once, and gets no CORS headers
    let r = get_with(&b, TOKEN, &[("origin", "https://evil.example")]).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

// ---------------------------------------------------------------- fake Speech service limits

async fn ws_connect(b: &speech_token_broker::RunningBroker) -> Ws {
    let v = grant(b).await;
    let url = format!(
        "{}?Authorization=Bearer%20{}",
        v["endpoint"].as_str().unwrap(),
        v["token"].as_str().unwrap()
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

#[tokio::test]
async fn the_fake_speech_service_refuses_huge_frames() {
    let b = start(&[], &[]).await;
    let mut ws = ws_connect(&b).await;
    let big = vec![0u8; 2 * 1024 * 1024];
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(big.into()))
        .await;
    let end = close_frame(&mut ws, Duration::from_secs(5)).await;
    if let Some(c) = end {
        assert_eq!(u16::from(c.code), 1009);
    }
}

#[tokio::test]
async fn the_fake_speech_service_closes_idle_connections() {
    let b = start(&["--ws-idle-timeout", "1"], &[]).await;
    let mut ws = ws_connect(&b).await;
    let end = close_frame(&mut ws, Duration::from_secs(4)).await;
    assert_eq!(u16::from(end.expect("close frame").code), 1000);
}

#[tokio::test]
async fn shutdown_sends_close_frames() {
    let b = start(&[], &[]).await;
    let mut ws = ws_connect(&b).await;
    drop(b);
    let end = close_frame(&mut ws, Duration::from_secs(4)).await;
    assert_eq!(u16::from(end.expect("a close frame").code), 1001);
}

/// Broker runs in [`sigterm_closes_every_websocket_with_1001_before_the_process_exits`]: before
/// the fix at least one close frame was lost in most runs, so five runs catch it reliably.
const SIGTERM_RUNS: usize = 5;
/// WebSocket sessions of each kind (relayed, fake Speech service) open at each SIGTERM.
const SESSIONS_PER_KIND: usize = 2;
/// How long a client waits for its close frame: the broker's shutdown grace (5 s) plus slack.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A dev grant's endpoint with its token as the SDK opens it (a relay ticket unless `?relay=0`).
async fn sdk_url(c: &reqwest::Client, base: &str, query: &str) -> String {
    let v: serde_json::Value = c
        .get(format!("{base}{TOKEN}{query}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!(
        "{}?Authorization=Bearer%20{}",
        v["endpoint"].as_str().unwrap(),
        v["token"].as_str().unwrap()
    )
}

/// Pings `ws` and reads until the pong: the session task runs, and the HTTP connection that
/// carried the upgrade has handed the socket over (so it no longer holds the shutdown back).
async fn until_pong(ws: &mut Ws) {
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Ping(b"up?".to_vec().into()))
        .await
        .unwrap();
    tokio::time::timeout(CLOSE_WITHIN, async {
        while let Some(m) = ws.next().await {
            if matches!(m.expect("session open"), Message::Pong(_)) {
                return;
            }
        }
        panic!("session ended before the pong");
    })
    .await
    .expect("a pong");
}

/// The real binary on SIGTERM (README: "open WebSockets get a close frame 1001"; relay: "shutdown
/// sends 1001 both ways", "one log line per session"). [`shutdown_sends_close_frames`] runs
/// in-process, where nothing exits: only the process shows whether the close frames are sent
/// before `main` returns and the runtime drops the session tasks.
#[tokio::test]
async fn sigterm_closes_every_websocket_with_1001_before_the_process_exits() {
    // no idle keep-alive connection: closing one would give the session tasks time to send
    // their close frames, hiding the bug
    let c = common::client_without_keep_alive();
    for run_no in 0..SIGTERM_RUNS {
        let run = run_binary(&["--relay"], &[]).await;
        let mut waiting = Vec::new();
        for _ in 0..SESSIONS_PER_KIND {
            for (kind, query) in [("relayed", ""), ("fake Speech", "?relay=0")] {
                let url = sdk_url(&c, &run.base, query).await;
                let mut ws = connect(&url, None).await.expect("upgrade");
                until_pong(&mut ws).await;
                // read from now on: a close frame that arrives just before the process exits
                // must not be lost to an unread receive buffer
                waiting.push((
                    kind,
                    tokio::spawn(async move { close_frame(&mut ws, CLOSE_WITHIN).await }),
                ));
            }
        }
        run.sigterm();
        for (kind, task) in waiting {
            let end = task.await.unwrap();
            assert_eq!(
                end.map(|c| u16::from(c.code)),
                Some(1001),
                "run {run_no}: the {kind} session's close frame"
            );
        }
        let log = run.exited().await;
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("relay session"))
            .collect();
        assert_eq!(lines.len(), SESSIONS_PER_KIND, "run {run_no}: {lines:?}");
        // "shutdown", or "upstream-closed" when the relay's upstream (dev: this broker's own
        // fake Speech service, told the same) sent its 1001 first
        assert!(
            lines.iter().all(
                |l| l.contains("close=\"shutdown\"") || l.contains("close=\"upstream-closed\"")
            ),
            "run {run_no}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn websocket_sessions_outlive_the_request_deadline() {
    let b = start(&["--request-timeout", "1"], &[]).await;
    let mut ws = ws_connect(&b).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..3 {
        let head = b"Path:audio\r\nX-RequestId:LONG";
        let mut f = (head.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(head);
        f.extend_from_slice(&[0u8; 64]);
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(f.into()))
            .await
            .unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => {}
                other => panic!("session ended: {other:?}"),
            }
        }
    })
    .await
    .expect("an answer after the request deadline");
    assert!(got.contains("X-RequestId:LONG"));
}
