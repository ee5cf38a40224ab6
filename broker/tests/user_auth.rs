//! `--auth entra`: the broker validates the app user's Entra access token as Microsoft documents
//! for web APIs, against a loopback fake Entra ID (OpenID configuration + JWKS, RS256 test keys).

mod common;

use std::time::Duration;

use common::entra::{self, fake_entra, sign, sign_with, user_claims, FakeEntra};
use common::{client, get, get_json, get_with, start, TOKEN};
use serde_json::{json, Value};
use speech_token_broker::RunningBroker;

async fn broker(e: &FakeEntra, extra: &[&str]) -> RunningBroker {
    let mut args: Vec<String> = e.broker_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    start(&refs, &[]).await
}

async fn ask(b: &RunningBroker, bearer: Option<&str>) -> reqwest::Response {
    match bearer {
        Some(t) => get_with(b, TOKEN, &[("Authorization", &format!("Bearer {t}"))]).await,
        None => get(b, TOKEN).await,
    }
}

async fn assert_refused(b: &RunningBroker, bearer: Option<&str>, why: &str) {
    let r = ask(b, bearer).await;
    assert_eq!(r.status(), 401, "{why}");
    let www = r
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{why}: no WWW-Authenticate"))
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.starts_with("Bearer"), "{why}: {www}");
    assert_eq!(r.headers()["cache-control"], "no-store", "{why}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized", "{why}");
    assert!(v.get("token").is_none(), "{why}");
}

#[tokio::test]
async fn valid_v2_and_v1_tokens_get_a_speech_token() {
    let e = fake_entra().await;
    let b = broker(&e, &[]).await;
    let r = ask(&b, Some(&sign(&user_claims(&e, "user-1")))).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["token"].as_str().unwrap().len() > 20);

    // v1 form: issuer https://sts.windows.net/{tid}/, audience the App ID URI
    let mut c = user_claims(&e, "user-2");
    c["iss"] = json!(format!("https://sts.windows.net/{}/", entra::TENANT));
    c["aud"] = json!(entra::API_APP_ID_URI);
    c["ver"] = json!("1.0");
    assert_eq!(ask(&b, Some(&sign(&c))).await.status(), 200);
    // keys were fetched once and cached
    assert_eq!(e.key_fetches(), 1);
    assert_eq!(b.upstream_requests(), 1);
}

#[tokio::test]
async fn every_invalid_token_is_refused_with_401_and_nothing_is_issued() {
    let e = fake_entra().await;
    let b = broker(&e, &[]).await;
    let now = common::now_unix();
    let good = user_claims(&e, "user-1");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("wrong aud", sign(&with("aud", json!("api://someone-else")))),
        (
            "wrong iss",
            sign(&with("iss", json!("https://evil.example/v2.0"))),
        ),
        (
            "foreign tid (its own, consistent issuer)",
            sign(&{
                let mut c = with("tid", json!(entra::OTHER_TENANT));
                c["iss"] = json!(e.issuer_v2(entra::OTHER_TENANT));
                c
            }),
        ),
        (
            "issuer of another tenant",
            sign(&with("iss", json!(e.issuer_v2(entra::OTHER_TENANT)))),
        ),
        ("expired", sign(&with("exp", json!(now - 400)))),
        ("nbf in the future", sign(&with("nbf", json!(now + 400)))),
        ("no exp", sign(&without("exp"))),
        ("alg none", entra::unsigned(&good)),
        (
            "HS256 signed with the public key",
            entra::sign_hs256_with_public_key(&good),
        ),
        ("missing scope", sign(&with("scp", json!("User.Read")))),
        ("no scp and no roles", sign(&without("scp"))),
        (
            "no oid (never authorize on upn/email)",
            sign(&without("oid")),
        ),
        ("no tid", sign(&without("tid"))),
        ("malformed", "not.a.jwt".to_string()),
        ("garbage", "eyJhbGciOiJSUzI1NiJ9".to_string()),
        (
            "signed by an unpublished key",
            sign_with(&good, entra::KEY2_PEM, entra::KID1),
        ),
    ];
    for (why, token) in &cases {
        assert_refused(&b, Some(token), why).await;
    }
    assert_refused(&b, None, "no Authorization header").await;
    let basic = format!("Basic {}", sign(&good));
    let r = get_with(&b, TOKEN, &[("Authorization", &basic)]).await;
    assert_eq!(r.status(), 401, "not a Bearer scheme");
    // nothing was issued
    assert_eq!(b.upstream_requests(), 0);
    // the missing-scope refusal says which scope it wants (RFC 6750)
    let r = ask(&b, Some(&sign(&with("scp", json!("User.Read"))))).await;
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("insufficient_scope"), "{www}");
    assert!(www.contains(entra::SCOPE), "{www}");
    // and a good token still works afterwards
    assert_eq!(ask(&b, Some(&sign(&good))).await.status(), 200);
}

#[tokio::test]
async fn app_roles_are_accepted_when_configured() {
    let e = fake_entra().await;
    let b = broker(&e, &["--auth-role", "Speech.Use"]).await;
    let mut c = user_claims(&e, "daemon-1");
    c.as_object_mut().unwrap().remove("scp");
    c["roles"] = json!(["Other", "Speech.Use"]);
    assert_eq!(ask(&b, Some(&sign(&c))).await.status(), 200);
    c["roles"] = json!(["Other"]);
    assert_refused(&b, Some(&sign(&c)), "role missing").await;
}

#[tokio::test]
async fn unknown_kid_refetches_keys_at_most_once_per_interval_then_accepts_the_rotated_key() {
    let e = fake_entra().await;
    let b = broker(&e, &["--auth-keys-min-refetch", "1"]).await;
    let good = user_claims(&e, "user-1");
    assert_eq!(ask(&b, Some(&sign(&good))).await.status(), 200);
    assert_eq!(e.key_fetches(), 1);
    // Entra rolls over to key 2 before the broker has seen it.
    let rotated = sign_with(&good, entra::KEY2_PEM, entra::KID2);
    // Within the refetch interval an unknown kid does not hammer the JWKS endpoint.
    assert_refused(&b, Some(&rotated), "unknown kid").await;
    assert_refused(&b, Some(&rotated), "unknown kid again").await;
    assert_eq!(e.key_fetches(), 1);
    e.publish(entra::KEY2_JWK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ask(&b, Some(&rotated)).await.status(), 200);
    assert_eq!(e.key_fetches(), 2);
    // many unknown kids at once: still one fetch per interval
    let unknown = sign_with(&good, entra::KEY2_PEM, "never-published");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let u = b.url("/api/speech-token");
        let t = unknown.clone();
        set.spawn(async move {
            client()
                .get(u)
                .header("Authorization", format!("Bearer {t}"))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), 401);
    }
    assert_eq!(e.key_fetches(), 3);
}

#[tokio::test]
async fn rate_limit_is_per_user_and_anonymous_refusals_do_not_drain_it() {
    let e = fake_entra().await;
    let b = broker(&e, &["--rate-limit", "6", "--rate-burst", "2"]).await;
    let alice = sign(&user_claims(&e, "alice"));
    let bob = sign(&user_claims(&e, "bob"));
    // a flood of bad tokens from the same IP first
    for _ in 0..10 {
        let s = ask(&b, Some("bad.token.here")).await.status();
        assert!(s == 401 || s == 429, "{s}");
    }
    assert_eq!(ask(&b, Some(&alice)).await.status(), 200);
    assert_eq!(ask(&b, Some(&alice)).await.status(), 200);
    let r = ask(&b, Some(&alice)).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // another user on the same IP is not affected
    assert_eq!(ask(&b, Some(&bob)).await.status(), 200);
}

#[tokio::test]
async fn preflight_allows_the_authorization_header() {
    let e = fake_entra().await;
    let b = broker(&e, &["--allow-origin", "https://app.example.com"]).await;
    let r = client()
        .request(reqwest::Method::OPTIONS, b.url("/api/speech-token"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-headers"], "authorization");
}

#[tokio::test]
async fn dev_entra_serves_the_demo_its_own_tenant() {
    let b = start(&["--dev-entra"], &[]).await;
    let c = client();
    // unauthenticated: refused
    assert_eq!(ask(&b, None).await.status(), 401);
    // the MSAL stand-in's configuration, then a user token from its token endpoint
    let cfg = get_json(&b, "/dev-entra/msal-config").await;
    let r = c
        .post(b.url(cfg["tokenEndpoint"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let user = t["access_token"].as_str().unwrap();
    assert_eq!(ask(&b, Some(user)).await.status(), 200);
    // not through a proxy, and dev only
    let r = c
        .post(b.url(cfg["tokenEndpoint"].as_str().unwrap()))
        .header("X-Forwarded-For", "203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(common::settings(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--dev-entra",
            "--allow-host",
            "x"
        ],
        &[("SPEECH_KEY", "k")]
    )
    .is_err());
}
