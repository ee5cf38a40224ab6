//! dev mode over loopback: token contract, origins/CORS, auth hook, rate limit, admin, static files.

mod common;

use std::time::{Duration, Instant};

use common::speech::stats;
use common::{admin, client, decode_payload, get, get_json, get_with, grant, start, TOKEN};
use serde_json::{json, Value};
use speech_token_broker::devjwt::Verdict;

/// A key-mode relay broker whose token service is unreachable (its routes answer without it).
async fn key_relay_broker() -> speech_token_broker::RunningBroker {
    start(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            "http://127.0.0.1:9",
            "--relay",
        ],
        &[("SPEECH_KEY", "k")],
    )
    .await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn token_shape_headers_and_signature() {
    let b = start(&["--ttl", "60"], &[]).await;
    let c = client();
    for method in ["GET", "POST"] {
        let req = if method == "GET" {
            c.get(b.url("/api/speech-token"))
        } else {
            c.post(b.url("/api/speech-token"))
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert_eq!(header(&r, "pragma"), Some("no-cache"));
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        let v: Value = r.json().await.unwrap();
        let token = v["token"].as_str().unwrap();
        let expires_in = v["expiresIn"].as_f64().expect("numeric expiresIn");
        assert!((58.0..=60.0).contains(&expires_in), "{expires_in}");
        assert_eq!(v["region"], "local");
        assert_eq!(
            v["endpoint"].as_str().unwrap(),
            format!(
                "ws://{}/speech/recognition/conversation/cognitiveservices/v1",
                b.addr
            )
        );
        assert_eq!(v.as_object().unwrap().len(), 4);
        // signed by this broker, unexpired, with the documented claims
        assert!(matches!(
            b.verify_dev_token(token),
            Some(Verdict::Accepted { .. })
        ));
        let claims = decode_payload(token);
        assert_eq!(claims["iss"], "speech-token-broker-dev");
        assert_eq!(claims["aud"], "speech");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        // a token of another process does not verify
        let other = start(&[], &[]).await;
        assert!(matches!(
            other.verify_dev_token(token),
            Some(Verdict::BadSignature { .. })
        ));
    }
    // one upstream (signer) call for both answers: cached
    assert_eq!(b.upstream_requests(), 1);
    let r = c.get(b.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn expires_in_is_remaining_lifetime() {
    let b = start(&["--ttl", "10"], &[]).await;
    let v = grant(&b).await;
    let first = v["expiresIn"].as_f64().unwrap();
    assert!((9.0..=10.0).contains(&first));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let v2 = grant(&b).await;
    assert_eq!(v2["token"], v["token"], "still cached");
    let second = v2["expiresIn"].as_f64().unwrap();
    assert!(
        second <= first - 2.0 && second >= 1.0,
        "{first} -> {second}"
    );
    // expiry is real: the token's exp is in the past once expiresIn has run out
    let claims = decode_payload(v["token"].as_str().unwrap());
    // (exp is whole seconds: allow the fraction)
    assert!(claims["exp"].as_u64().unwrap() as f64 + 1.0 >= common::now_unix() as f64 + second);
}

#[tokio::test]
async fn origin_allow_list_and_cors() {
    let b = start(
        &[
            "--allow-origin",
            "https://app.example.com",
            "--allow-loopback-origins=false",
        ],
        &[],
    )
    .await;
    let c = client();
    let url = b.url("/api/speech-token");

    let r = c
        .get(&url)
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert!(r.headers().get_all("vary").iter().any(|v| v == "Origin"));

    for bad in [
        "https://evil.example",
        "null",
        "http://127.0.0.1:1234",
        "https://app.example.com.evil.example",
    ] {
        let r = c.get(&url).header("Origin", bad).send().await.unwrap();
        assert_eq!(r.status(), 403, "{bad}");
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert!(header(&r, "access-control-allow-origin").is_none());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "forbidden-origin");
    }
    // cross-site without Origin
    let r = c
        .get(&url)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // same-origin browser request and non-browser request
    let r = c
        .get(&url)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let own = format!("http://{}", b.addr);
    let r = c.post(&url).header("Origin", &own).send().await.unwrap();
    assert_eq!(r.status(), 200, "the broker's own origin");

    // preflight
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, x-app-session, cookie",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&r, "access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("authorization, x-app-session")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(header(&r, "access-control-allow-origin").is_none());
}

/// `Access-Control-Expose-Headers` of a cross-origin answer, lower-cased, split at commas.
fn exposed(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("access-control-expose-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

/// The browser client judges a JWT's absolute `exp` against the broker's clock, the answer's
/// `Date` header, which a cross-origin page can read only if it is exposed (docs/ARCHITECTURE.md,
/// "Token age"); `Retry-After` is read on 429/503. Both on every CORS answer, success and error.
#[tokio::test]
async fn cors_answers_expose_date_and_retry_after() {
    const APP: &str = "https://app.example.com";
    let b = start(
        &[
            "--allow-origin",
            APP,
            "--require-header",
            "X-App-Session",
            "--rate-limit",
            "60",
            "--rate-burst",
            "2",
        ],
        &[("BROKER_REQUIRE_HEADER_VALUE", "s3ss10n")],
    )
    .await;
    let c = client();
    let url = b.url("/api/speech-token");
    let check = |r: &reqwest::Response, what: &str| {
        assert_eq!(
            header(r, "access-control-allow-origin"),
            Some(APP),
            "{what}"
        );
        let ex = exposed(r);
        assert!(ex.iter().any(|h| h == "date"), "{what}: {ex:?}");
        assert!(ex.iter().any(|h| h == "retry-after"), "{what}: {ex:?}");
        assert!(
            header(r, "date").is_some(),
            "{what}: the header exposed is sent"
        );
    };
    let ok = c
        .get(&url)
        .header("Origin", APP)
        .header("X-App-Session", "s3ss10n")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    check(&ok, "200");
    let unauth = c.get(&url).header("Origin", APP).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    check(&unauth, "401");
    let put = c.put(&url).header("Origin", APP).send().await.unwrap();
    assert_eq!(put.status(), 405);
    check(&put, "405");
    // burst of 2: the 200 above took one
    let mut limited = None;
    for _ in 0..3 {
        let r = c
            .get(&url)
            .header("Origin", APP)
            .header("X-App-Session", "s3ss10n")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("a 429");
    assert!(header(&limited, "retry-after").is_some());
    check(&limited, "429");
    // a refused origin gets no CORS headers at all
    let r = c
        .get(&url)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(header(&r, "access-control-expose-headers").is_none());
}

#[tokio::test]
async fn loopback_origins_allowed_in_dev_by_default() {
    let b = start(&[], &[]).await;
    for o in [
        "http://127.0.0.1:45678",
        "http://localhost:3000",
        "http://[::1]:8000",
    ] {
        let r = get_with(&b, TOKEN, &[("Origin", o)]).await;
        assert_eq!(r.status(), 200, "{o}");
        assert_eq!(header(&r, "access-control-allow-origin"), Some(o));
    }
    let r = get_with(&b, TOKEN, &[("Origin", "https://example.com")]).await;
    assert_eq!(r.status(), 403);
    // DNS-rebinding guard: a foreign Host name is refused in dev mode
    let r = get_with(&b, TOKEN, &[("Host", "rebind.example:80")]).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn require_header_hook() {
    let b = start(
        &["--require-header", "X-App-Session"],
        &[("BROKER_REQUIRE_HEADER_VALUE", "s3ss10n")],
    )
    .await;
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
    let r = get_with(&b, TOKEN, &[("X-App-Session", "wrong")]).await;
    assert_eq!(r.status(), 401);
    let r = get_with(&b, TOKEN, &[("X-App-Session", "s3ss10n")]).await;
    assert_eq!(r.status(), 200);
    // preflight does not need the header
    let r = client()
        .request(reqwest::Method::OPTIONS, b.url("/api/speech-token"))
        .header("Origin", "http://localhost:5173")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-app-session")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn rate_limit_429_with_retry_after() {
    let b = start(&["--rate-limit", "60", "--rate-burst", "3"], &[]).await;
    for _ in 0..3 {
        assert_eq!(get(&b, TOKEN).await.status(), 200);
    }
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate-limited");
    assert_eq!(v["retryAfter"], 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&b, TOKEN).await.status(), 200);
    // 0 = off
    let off = start(&["--rate-limit", "0"], &[]).await;
    for _ in 0..50 {
        assert_eq!(get(&off, TOKEN).await.status(), 200);
    }
}

#[tokio::test]
async fn admin_outage_fail_ttl_slow_stats_reset() {
    let b = start(&["--rate-limit", "0"], &[]).await;
    let c = client();
    let tok = |r: Value| r["token"].as_str().unwrap().to_string();

    // outage
    admin(&b, "/admin/outage", json!({"seconds": 30})).await;
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unavailable");
    admin(&b, "/admin/outage", json!({"seconds": 0})).await;
    let first = tok(grant(&b).await);

    // fail injection: next 2 requests get 429 with Retry-After, then normal
    admin(
        &b,
        "/admin/fail",
        json!({"status": 429, "count": 2, "retryAfter": 7}),
    )
    .await;
    for _ in 0..2 {
        let r = get(&b, TOKEN).await;
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "retry-after"), Some("7"));
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "rate-limited");
    }
    assert_eq!(get(&b, TOKEN).await.status(), 200);
    for (status, kind) in [
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not-found"),
        (500, "internal"),
        (503, "unavailable"),
    ] {
        admin(&b, "/admin/fail", json!({"status": status, "count": 1})).await;
        let r = get(&b, TOKEN).await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], kind);
    }
    // raw body with status 200 (malformed answers)
    admin(
        &b,
        "/admin/fail",
        json!({"status": 200, "count": 1, "body": "{\"token\": 42}"}),
    )
    .await;
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    assert_eq!(r.text().await.unwrap(), "{\"token\": 42}");
    // redirect
    admin(
        &b,
        "/admin/fail",
        json!({"status": 302, "count": 1, "location": "/login"}),
    )
    .await;
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 302);
    assert_eq!(header(&r, "location"), Some("/login"));

    // ttl: drops the cached token, new tokens carry the new lifetime
    admin(&b, "/admin/ttl", json!({"seconds": 5})).await;
    let v = grant(&b).await;
    assert_ne!(tok(v.clone()), first);
    assert!(v["expiresIn"].as_f64().unwrap() <= 5.0);
    let r = c
        .post(b.url("/admin/ttl"))
        .json(&json!({"seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(b.url("/admin/ttl"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad-request");

    // slow
    admin(&b, "/admin/slow", json!({"ms": 400})).await;
    let t0 = Instant::now();
    assert_eq!(get(&b, TOKEN).await.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(400));
    admin(&b, "/admin/slow", json!({"ms": 0})).await;

    let s = stats(&b).await;
    assert_eq!(s["ttl"], 5);
    assert!(s["tokenRequests"].as_u64().unwrap() >= 14);
    assert_eq!(s["tokenResponsesOk"], 4);
    assert_eq!(s["upstreamRequests"], 2);
    assert_eq!(s["speechConnections"], json!([]));

    admin(&b, "/admin/outage", json!({"seconds": 60})).await;
    admin(&b, "/admin/fail", json!({"status": 500, "count": 5})).await;
    admin(&b, "/admin/reset", json!({})).await;
    let s = stats(&b).await;
    assert_eq!(s["tokenRequests"], 0);
    assert_eq!(s["tokenResponsesOk"], 0);
    assert_eq!(s["upstreamRequests"], 0);
    let r = get(&b, TOKEN).await;
    assert_eq!(r.status(), 200, "reset ended outage and fail injection");
    let s = stats(&b).await;
    assert_eq!(s["upstreamRequests"], 1, "reset dropped the cached token");
}

#[tokio::test]
async fn admin_routes_exist_only_in_dev_and_refuse_foreign_origins() {
    let b = start(&[], &[]).await;
    let c = client();
    let r = c
        .post(b.url("/admin/reset"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let key = start(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            "http://127.0.0.1:9",
        ],
        &[("SPEECH_KEY", "k")],
    )
    .await;
    let r = c.get(key.url("/admin/stats")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "content-type"), Some("application/json"));
}

#[tokio::test]
async fn static_files_with_csp_and_types() {
    let dir = common::scratch_dir("static");
    let (www, pkg, vendor) = (dir.join("www"), dir.join("pkg"), dir.join("vendor"));
    for d in [&www, &pkg, &vendor] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(www.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(www.join("app.mjs"), "export const a = 1;").unwrap();
    std::fs::write(pkg.join("client_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(pkg.join("client.js"), "export default 1;").unwrap();
    std::fs::write(vendor.join("sdk.bundle.js"), "var SpeechSDK = {};").unwrap();
    let b = start(
        &[
            "--www",
            www.to_str().unwrap(),
            "--pkg",
            pkg.to_str().unwrap(),
            "--vendor",
            vendor.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let c = client();
    let csp = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' ws://{}; worker-src 'self' blob:; \
         style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        b.addr
    );
    for (path, ct, body) in [
        ("/", "text/html", "<!doctype html>"),
        ("/app.mjs", "text/javascript", "export const a"),
        ("/pkg/client_bg.wasm", "application/wasm", "\0asm"),
        ("/pkg/client.js", "text/javascript", "export default"),
        ("/vendor/sdk.bundle.js", "text/javascript", "var SpeechSDK"),
    ] {
        let r = c.get(b.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            header(&r, "content-security-policy"),
            Some(csp.as_str()),
            "{path}"
        );
        assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&r, "referrer-policy"), Some("no-referrer"));
        assert!(
            header(&r, "content-type").unwrap().starts_with(ct),
            "{path}: {:?}",
            header(&r, "content-type")
        );
        assert!(r.text().await.unwrap().starts_with(body));
    }
    let r = c.get(b.url("/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("content-security-policy"));
    let r = c.get(b.url("/pkg/../../etc/passwd")).send().await.unwrap();
    assert_ne!(r.status(), 200);
    std::fs::remove_dir_all(&dir).ok();
}

/// "Every answer of the broker API is JSON and uncacheable" (`broker/src/http.rs`), 405s included,
/// whichever room answers them: the token route, health, admin, the relay, the fake Speech
/// service, the Entra stand-in, the SDK's redirect-probe routes and static files. Each carries
/// `Allow` (RFC 9110 requires it).
#[tokio::test]
async fn every_405_is_a_json_error_with_no_store_and_allow() {
    use reqwest::Method;
    async fn check(
        c: &reqwest::Client,
        b: &speech_token_broker::RunningBroker,
        m: Method,
        path: &str,
        allows: &str,
    ) {
        let what = format!("{m} {}", path.split('?').next().unwrap());
        let r = c.request(m, b.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{what}");
        assert_eq!(
            header(&r, "content-type"),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(header(&r, "cache-control"), Some("no-store"), "{what}");
        assert_eq!(header(&r, "pragma"), Some("no-cache"), "{what}");
        let allow = header(&r, "allow").unwrap_or_default().to_string();
        assert!(
            allow.split(',').any(|a| a.trim() == allows),
            "{what}: Allow {allow:?} lacks {allows}"
        );
        let v: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(v["error"], "method-not-allowed", "{what}");
    }
    let www = common::scratch_dir("405");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    let b = start(&["--relay", "--www", www.to_str().unwrap()], &[]).await;
    let c = client();
    let grant = grant(&b).await;
    let relay_path = reqwest::Url::parse(grant["endpoint"].as_str().unwrap())
        .unwrap()
        .path()
        .to_string();
    let relay = format!(
        "{relay_path}?Authorization=Bearer%20{}",
        grant["token"].as_str().unwrap()
    );
    let plain = get_json(&b, "/api/speech-token?relay=0").await;
    let speech = format!(
        "/speech/recognition/conversation/cognitiveservices/v1?Authorization=Bearer%20{}",
        plain["token"].as_str().unwrap()
    );
    for (m, path, allows) in [
        (Method::PUT, "/api/speech-token", "POST"),
        (Method::PUT, "/healthz", "GET"),
        (Method::DELETE, "/readyz", "GET"),
        (Method::PUT, "/admin/stats", "GET"),
        (Method::GET, "/admin/ttl", "POST"),
        (Method::PUT, relay.as_str(), "GET"),
        (Method::POST, speech.as_str(), "GET"),
        (Method::PUT, "/index.html", "GET"),
    ] {
        check(&c, &b, m, path, allows).await;
    }
    // rewritten into JSON, a 405 keeps the CORS headers of the route's origin guard
    let r = c
        .put(b.url("/admin/stats"))
        .header("Origin", "http://localhost:5555")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("http://localhost:5555")
    );
    assert!(exposed(&r).iter().any(|h| h == "date"));
    let e = start(&["--dev-entra"], &[]).await;
    check(&c, &e, Method::PUT, "/dev-entra/msal-config", "GET").await;
    check(
        &c,
        &e,
        Method::GET,
        "/dev-entra/t/oauth2/v2.0/token",
        "POST",
    )
    .await;
    let key = key_relay_broker().await;
    check(
        &c,
        &key,
        Method::PUT,
        "/speech/recognition/conversation/cognitiveservices/v1",
        "GET",
    )
    .await;
    check(
        &c,
        &key,
        Method::PUT,
        "/tts/cognitiveservices/websocket/v1",
        "GET",
    )
    .await;
    let _ = std::fs::remove_dir_all(&www);
}

/// `HEAD` is not `GET` here: axum's `get()` also serves HEAD by running the GET handler, so a
/// HEAD on the token route minted a token and spent rate-limit allowance for an answer without
/// a body. README: "405 method-not-allowed | not GET/POST/OPTIONS"; the other API routes serve
/// the methods the README names, so HEAD gets their 405 too (static files are a file server and
/// keep HEAD).
#[tokio::test]
async fn head_gets_405_with_allow_and_mints_nothing() {
    use reqwest::Method;
    let b = start(&["--rate-limit", "1", "--rate-burst", "1"], &[]).await;
    let c = client();
    let r = c.head(b.url(TOKEN)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), Some("GET, POST, OPTIONS"));
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    let s = stats(&b).await;
    assert_eq!(s["tokenRequests"], 0, "{s}");
    assert_eq!(s["upstreamRequests"], 0, "{s}");
    // the one request the burst allows is still there
    grant(&b).await;

    let e = start(&["--dev-entra"], &[]).await;
    let key = key_relay_broker().await;
    for (broker, path) in [
        (&b, "/healthz"),
        (&b, "/readyz"),
        (&b, "/admin/stats"),
        (&e, "/dev-entra/msal-config"),
        (&e, "/dev-entra/t/discovery/v2.0/keys"),
        (
            &key,
            "/speech/recognition/conversation/cognitiveservices/v1",
        ),
    ] {
        let r = c
            .request(Method::HEAD, broker.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "HEAD {path}");
        assert_eq!(header(&r, "allow"), Some("GET"), "HEAD {path}");
        assert_eq!(
            header(&r, "content-type"),
            Some("application/json"),
            "HEAD {path}"
        );
    }
    assert_eq!(b.upstream_requests(), 1, "HEAD /readyz asked upstream");
}

/// Numbers the admin routes turn into instants are range-checked: `{"seconds": u64::MAX}` on
/// `/admin/outage` overflowed `Instant + Duration` and panicked (the release profile's
/// `panic = "abort"` then killed the whole broker), and `dropAfterMs` did the same as soon as the
/// next fake Speech connection opened. Out of range is a 400 in the README's error shape; the
/// bounds themselves are taken.
#[tokio::test]
async fn admin_numbers_out_of_range_are_400_not_a_crash() {
    use speech_token_broker::admin::MAX_OUTAGE_SECS;
    use speech_token_broker::speech::MAX_DROP_AFTER_MS;
    let b = start(&[], &[]).await;
    let c = client();
    for (path, body, field) in [
        ("/admin/outage", json!({"seconds": u64::MAX}), "seconds"),
        (
            "/admin/outage",
            json!({"seconds": MAX_OUTAGE_SECS + 1}),
            "seconds",
        ),
        (
            "/admin/speech",
            json!({"dropAfterMs": u64::MAX}),
            "dropAfterMs",
        ),
        (
            "/admin/speech",
            json!({"dropAfterMs": MAX_DROP_AFTER_MS + 1}),
            "dropAfterMs",
        ),
    ] {
        let r = c.post(b.url(path)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path} {body}");
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad-request", "{path} {body}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(field), "{path} {body}: {detail}");
    }
    admin(&b, "/admin/outage", json!({"seconds": MAX_OUTAGE_SECS})).await;
    admin(&b, "/admin/outage", json!({"seconds": 0})).await;
    admin(
        &b,
        "/admin/speech",
        json!({"dropAfterMs": MAX_DROP_AFTER_MS}),
    )
    .await;
    // the drop deadline is computed when a connection opens
    let v = get_json(&b, TOKEN).await;
    let url = format!(
        "{}?Authorization=Bearer%20{}",
        v["endpoint"].as_str().unwrap(),
        v["token"].as_str().unwrap()
    );
    let _ws = common::speech::connect(&url, None).await.expect("upgrade");
    assert_eq!(get(&b, "/healthz").await.status(), 200);
}

/// A `--www` pointed at a checkout or a build folder published its dot-files (`.env`,
/// `.git/config`) and followed symlinks out of the folder (an outside review read
/// `/etc/hostname` through one). Both are 404 now, under every static mount; files inside, a
/// symlink that stays inside and a directory's `index.html` are still served.
#[cfg(unix)]
#[tokio::test]
async fn static_files_hide_dot_files_and_never_leave_their_directory() {
    let dir = common::scratch_dir("confined");
    let (www, pkg, outside) = (dir.join("www"), dir.join("pkg"), dir.join("outside"));
    for d in [&www, &pkg, &outside, &www.join(".git"), &www.join("sub")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(www.join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(www.join("sub/index.html"), "<!doctype html>sub").unwrap();
    std::fs::write(www.join(".env"), "SPEECH_KEY=secret").unwrap();
    std::fs::write(www.join(".git/config"), "[core]").unwrap();
    std::fs::write(pkg.join(".npmrc"), "//registry:_authToken=secret").unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), www.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, www.join("linked-dir")).unwrap();
    std::os::unix::fs::symlink(www.join("index.html"), www.join("inside.html")).unwrap();
    let b = start(
        &[
            "--www",
            www.to_str().unwrap(),
            "--pkg",
            pkg.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let c = client();
    // A missing file's 404: what every refusal looks like, so that an answer never tells
    // whether something exists outside the directory.
    let missing = c.get(b.url("/missing.txt")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let missing = missing.text().await.unwrap();
    std::os::unix::fs::symlink(outside.join("nothing.txt"), www.join("dangling.txt")).unwrap();
    for path in [
        "/.env",
        "/%2eenv",
        "/.git/config",
        "/.git/",
        "/pkg/.npmrc",
        "/link.txt",
        "/dangling.txt",
        "/linked-dir/secret.txt",
        "/linked-dir",
        "/linked-dir/",
        "/sub/../.env",
    ] {
        let r = c.get(b.url(path)).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body, missing, "{path}");
    }
    // Negative control: what is inside is served.
    for (path, body) in [
        ("/", "<!doctype html>"),
        ("/sub/", "<!doctype html>sub"),
        ("/./sub/./index.html", "<!doctype html>sub"),
        ("/inside.html", "<!doctype html>"),
    ] {
        let r = c.get(b.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().starts_with(body), "{path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `--www` that is itself a symlink (a release swap: `current -> releases/vN`) is judged
/// against the tree it points to now, which is the one served: the outside review found the
/// check still looking at the tree of the broker's start.
#[cfg(unix)]
#[tokio::test]
async fn a_repointed_static_directory_is_confined_to_its_new_tree() {
    let dir = common::scratch_dir("swap");
    let (v1, v2, outside) = (dir.join("v1"), dir.join("v2"), dir.join("outside"));
    for d in [&v1, &v2, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::fs::write(v1.join("index.html"), "v1").unwrap();
    std::fs::write(v2.join("index.html"), "v2").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), v2.join("leak.txt")).unwrap();
    let current = dir.join("current");
    std::os::unix::fs::symlink(&v1, &current).unwrap();
    let b = start(&["--www", current.to_str().unwrap()], &[]).await;
    let c = client();
    assert_eq!(
        c.get(b.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v1"
    );
    // The swap.
    let next = dir.join("current.next");
    std::os::unix::fs::symlink(&v2, &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    assert_eq!(
        c.get(b.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v2"
    );
    let r = c.get(b.url("/leak.txt")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("secret"));
    let _ = std::fs::remove_dir_all(&dir);
}
