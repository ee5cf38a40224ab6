//! Bounded loopback load: 1000 concurrent clients cost exactly one upstream request per token
//! lifetime, and exactly one more once the cache passes its refresh point.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use common::{fake_jwt, serve_fake, start};
use serde_json::Value;

const CLIENTS: usize = 1000;
/// Token lifetime given by the fake STS; refresh margin = min(1.25 × max(30 s, 20%), 60%) = 12 s,
/// so the refresh point is 8 s after the first request: room for a slow, loaded CI machine.
const LIFETIME: u64 = 20;

async fn sts(State(calls): State<Arc<AtomicUsize>>) -> String {
    calls.fetch_add(1, Ordering::SeqCst);
    // slow upstream: every client of the burst arrives while the one request is in flight
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake_jwt(LIFETIME, &common::random_hex(8))
}

async fn burst(url: &str) -> Vec<String> {
    // several connection pools, as many clients would have
    let clients: Vec<reqwest::Client> = (0..8).map(|_| common::client()).collect();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let c = clients[i % clients.len()].clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut last_err = None;
            for _ in 0..3 {
                match c.get(&url).send().await {
                    Ok(r) => {
                        assert_eq!(r.status(), 200);
                        let v: Value = r.json().await.unwrap();
                        return v["token"].as_str().unwrap().to_string();
                    }
                    Err(e) => last_err = Some(e), // transient connect error under load: retry
                }
            }
            panic!("request failed: {last_err:?}");
        }));
    }
    let mut out = Vec::with_capacity(CLIENTS);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_clients_one_upstream_request_per_lifetime() {
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve_fake(
        Router::new()
            .route("/sts/v1.0/issueToken", post(sts))
            .with_state(Arc::clone(&calls)),
    )
    .await;
    let base = format!("http://{addr}");
    let b = start(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            &base,
            "--rate-limit",
            "0",
        ],
        &[("SPEECH_KEY", "load-key")],
    )
    .await;
    let url = b.url("/api/speech-token");

    let t0 = Instant::now();
    let first = burst(&url).await;
    let took = t0.elapsed();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one upstream request for {CLIENTS} concurrent clients"
    );
    assert!(
        first.iter().all(|t| *t == first[0]),
        "everyone got the same token"
    );
    assert!(
        took < Duration::from_millis(7500),
        "first burst must finish before the refresh point: {took:?}"
    );

    // past the refresh point (lifetime - margin = 8 s after the request was sent)
    tokio::time::sleep_until((t0 + Duration::from_millis(8600)).into()).await;
    let second = burst(&url).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one refresh");
    assert!(second.iter().all(|t| *t == second[0]));
    assert_ne!(second[0], first[0]);
    assert_eq!(b.upstream_requests(), 2);
    eprintln!("burst 1: {CLIENTS} clients in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_share_one_upstream_call() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&calls);
    let addr = serve_fake(Router::new().route(
        "/sts/v1.0/issueToken",
        post(move || {
            let c = Arc::clone(&c2);
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1000)).await;
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
            }
        }),
    ))
    .await;
    let b = start(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            &format!("http://{addr}"),
            "--rate-limit",
            "0",
        ],
        &[("SPEECH_KEY", "k")],
    )
    .await;
    let c = common::client();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (c, url) = (c.clone(), b.url("/api/speech-token"));
        tasks.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 502);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a burst shares one failing upstream call"
    );
}
