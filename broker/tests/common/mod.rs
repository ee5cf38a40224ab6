#![allow(dead_code)]
//! Helpers shared by the integration tests: in-process brokers on port 0, loopback fakes of the
//! upstream services, and a reqwest client that never uses a proxy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use clap::Parser;
use serde_json::Value;
use speech_token_broker::{Args, Broker, RunningBroker, Settings};

pub mod binary;
pub mod entra;
pub mod speech;

/// Flags every key/entra test broker needs on loopback (explicit `--auth`, host allow-list);
/// `start` adds them unless the test gives its own, and in entra mode without `--relay` also the
/// opt-in [`ENTRA_FLAG`] (a flag that does not apply is refused).
pub const DEPLOY_FLAGS: &[(&str, &str)] = &[("--auth", "none"), ("--allow-host", "127.0.0.1")];

/// The entra-mode opt-in that entra test brokers get from [`with_deploy_flags`].
pub const ENTRA_FLAG: &str = "--expose-entra-token";

pub fn settings(argv: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let mut full = vec!["speech-token-broker", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(argv);
    let args = Args::try_parse_from(full)?;
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::resolve(args, &move |k| map.get(k).cloned())
}

pub async fn start(argv: &[&str], env: &[(&str, &str)]) -> RunningBroker {
    let full = with_deploy_flags(argv);
    Broker::spawn(settings(&full, env).expect("valid settings"))
        .await
        .expect("broker starts")
}

/// `argv` plus the [`DEPLOY_FLAGS`] it lacks, for key and entra modes.
pub fn with_deploy_flags<'a>(argv: &[&'a str]) -> Vec<&'a str> {
    let mode = |name| argv.windows(2).any(|w| w[0] == "--mode" && w[1] == name);
    let deployed = mode("key") || mode("entra");
    let mut full: Vec<&str> = argv.to_vec();
    if mode("entra") && !argv.contains(&ENTRA_FLAG) && !argv.contains(&"--relay") {
        full.push(ENTRA_FLAG);
    }
    if deployed {
        for (flag, value) in DEPLOY_FLAGS {
            if argv.contains(flag) {
                continue;
            }
            full.push(flag);
            if !value.is_empty() {
                full.push(value);
            }
        }
    }
    full
}

pub fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// [`client`] that closes each connection after its answer: no idle keep-alive connection is
/// left open on the broker (one would hold its graceful shutdown back until it is closed).
pub fn client_without_keep_alive() -> reqwest::Client {
    client_builder().pool_max_idle_per_host(0).build().unwrap()
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
}

/// The token route.
pub const TOKEN: &str = "/api/speech-token";

/// `GET path` on `b`, with `headers`; the answer, whatever its status.
pub async fn get_with(
    b: &RunningBroker,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = client().get(b.url(path));
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    r.send().await.unwrap()
}

/// `GET path` on `b`; the answer, whatever its status.
pub async fn get(b: &RunningBroker, path: &str) -> reqwest::Response {
    get_with(b, path, &[]).await
}

/// `GET path` on `b`; the JSON body, whatever the status.
pub async fn get_json(b: &RunningBroker, path: &str) -> Value {
    get(b, path).await.json().await.unwrap()
}

/// `GET path` (the token route, perhaps with a query) with `headers`; asserts a 200 and returns
/// the grant.
pub async fn grant_with(b: &RunningBroker, path: &str, headers: &[(&str, &str)]) -> Value {
    let r = get_with(b, path, headers).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// `GET /api/speech-token`; asserts a 200 and returns the grant (`token`, `expiresIn`, …).
pub async fn grant(b: &RunningBroker) -> Value {
    grant_with(b, TOKEN, &[]).await
}

/// `POST path` (an admin route) with the JSON `body`; asserts a 200 and returns the answer.
pub async fn admin(b: &RunningBroker, path: &str, body: Value) -> Value {
    let r = client().post(b.url(path)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Serves `router` on a loopback port in the background.
pub async fn serve_fake(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An unsigned-looking JWT with the given lifetime and a unique `jti` (what issueToken returns is
/// opaque to the broker except for `iat`/`exp`).
pub fn fake_jwt(lifetime: u64, marker: &str) -> String {
    let iat = now_unix();
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(
        format!(r#"{{"region":"westeurope","iat":{iat},"exp":{},"jti":"{marker}","scope":"speechservices"}}"#, iat + lifetime)
            .as_bytes(),
    );
    let mut sig = [0u8; 32];
    getrandom::fill(&mut sig).unwrap();
    format!("{header}.{payload}.{}", B64.encode(sig))
}

/// A fresh directory path under the system's temp directory (`stb-<name>-<random>`), not yet
/// created: for a test's static files.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("stb-{name}-{}", random_hex(6)))
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

pub fn decode_payload(token: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&B64.decode(p).unwrap()).unwrap()
}
