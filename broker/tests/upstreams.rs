//! key and entra modes against loopback fakes that follow the documented contracts of
//! issueToken, the Entra token endpoint, App Service managed identity and IMDS.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use common::{client, fake_jwt, get_with, grant, serve_fake, start, TOKEN};
use serde_json::{json, Value};

// ------------------------------------------------------------------ fake STS (issueToken)

#[derive(Default)]
struct Sts {
    key: String,
    calls: AtomicUsize,
    /// 0 = behave; otherwise answer this status.
    force: AtomicU16,
    issued: Mutex<Vec<String>>,
    bad_requests: Mutex<Vec<String>>,
}

async fn issue_token(State(s): State<Arc<Sts>>, headers: HeaderMap, body: Bytes) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    if !body.is_empty() || headers.get("content-length").and_then(|v| v.to_str().ok()) != Some("0")
    {
        s.bad_requests
            .lock()
            .unwrap()
            .push("body must be empty with Content-Length: 0".into());
    }
    let forced = s.force.load(Ordering::SeqCst);
    if forced != 0 {
        return (StatusCode::from_u16(forced).unwrap(), "upstream trouble").into_response();
    }
    match headers.get("ocp-apim-subscription-key").and_then(|v| v.to_str().ok()) {
        Some(k) if k == s.key => {
            let t = fake_jwt(600, &common::random_hex(8));
            s.issued.lock().unwrap().push(t.clone());
            t.into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}})),
        )
            .into_response(),
    }
}

async fn fake_sts(key: &str) -> (Arc<Sts>, String) {
    let s = Arc::new(Sts {
        key: key.into(),
        ..Default::default()
    });
    let addr = serve_fake(
        Router::new()
            .route("/sts/v1.0/issueToken", post(issue_token))
            .with_state(Arc::clone(&s)),
    )
    .await;
    (s, format!("http://{addr}"))
}

#[tokio::test]
async fn key_mode_happy_path() {
    let key = common::random_hex(16);
    let (sts, base) = fake_sts(&key).await;
    let b = start(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            &base,
        ],
        &[("SPEECH_KEY", &key)],
    )
    .await;
    let c = client();
    let r = common::get(&b, TOKEN).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token"].as_str().unwrap(), sts.issued.lock().unwrap()[0]);
    assert_eq!(v["region"], "westeurope");
    let e = v["expiresIn"].as_f64().unwrap();
    assert!((598.0..=600.0).contains(&e), "{e}");
    assert!(v.get("endpoint").is_none());
    assert!(
        sts.bad_requests.lock().unwrap().is_empty(),
        "{:?}",
        sts.bad_requests.lock().unwrap()
    );
    // cached
    for _ in 0..5 {
        let v2: Value = c
            .post(b.url("/api/speech-token"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v2["token"], v["token"]);
    }
    assert_eq!(sts.calls.load(Ordering::SeqCst), 1);
    // key mode has no loopback origins by default
    let r = get_with(&b, TOKEN, &[("Origin", "http://127.0.0.1:3000")]).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn key_mode_bad_key_and_5xx_become_502_and_no_token_is_issued() {
    let (sts, base) = fake_sts("the-right-key").await;
    let wrong = start(
        &[
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--sts-base",
            &base,
        ],
        &[("SPEECH_KEY", "a-wrong-key")],
    )
    .await;
    let r = common::get(&wrong, TOKEN).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": "upstream", "detail": "issueToken answered 401"})
    );
    // the failure is remembered for a few seconds: the next request does not call upstream
    // (tests/hardening.rs checks that it is asked again afterwards)
    assert_eq!(common::get(&wrong, TOKEN).await.status(), 502);
    assert_eq!(sts.calls.load(Ordering::SeqCst), 1);

    for status in [500u16, 503, 429, 403] {
        let right = start(
            &[
                "--mode",
                "key",
                "--region",
                "westeurope",
                "--sts-base",
                &base,
            ],
            &[("SPEECH_KEY", "the-right-key")],
        )
        .await;
        sts.force.store(status, Ordering::SeqCst);
        let r = common::get(&right, TOKEN).await;
        assert_eq!(r.status(), 502, "{status}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["detail"], format!("issueToken answered {status}"));
        assert!(v.get("token").is_none());
    }
    sts.force.store(0, Ordering::SeqCst);

    // unreachable upstream
    let dead = start(
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
    let r = common::get(&dead, TOKEN).await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"],
        "issueToken unreachable"
    );
}

// ------------------------------------------------------------------ fake Entra endpoints

#[derive(Default)]
struct Entra {
    calls: AtomicUsize,
    seen: Mutex<Vec<String>>,
    access_token: String,
}

async fn aad_token(
    State(s): State<Arc<Entra>>,
    Path(tenant): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    s.seen.lock().unwrap().push(format!(
        "tenant={tenant} grant={:?} scope={:?}",
        f.get("grant_type"),
        f.get("scope")
    ));
    if f.get("grant_type").map(String::as_str) != Some("client_credentials")
        || f.get("scope").map(String::as_str)
            != Some("https://cognitiveservices.azure.com/.default")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error":"invalid_request","error_description":"AADSTS900144: bad request"}),
            ),
        )
            .into_response();
    }
    if tenant != "contoso-tenant"
        || f.get("client_id").map(String::as_str) != Some("app-id")
        || f.get("client_secret").map(String::as_str) != Some("right-secret")
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]})),
        )
            .into_response();
    }
    Json(json!({"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token": s.access_token})).into_response()
}

async fn imds_token(
    State(s): State<Arc<Entra>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return (StatusCode::BAD_REQUEST, Json(json!({"error":"invalid_request","error_description":"Required metadata header not specified"}))).into_response();
    }
    if q.get("api-version").map(String::as_str) != Some("2018-02-01")
        || q.get("resource").map(String::as_str) != Some("https://cognitiveservices.azure.com")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_request"})),
        )
            .into_response();
    }
    s.seen
        .lock()
        .unwrap()
        .push(format!("client_id={:?}", q.get("client_id")));
    let now = common::now_unix();
    Json(json!({
        "access_token": s.access_token, "client_id": "mi-client", "expires_in": "3599",
        "expires_on": (now + 3599).to_string(), "ext_expires_in": "3599", "not_before": now.to_string(),
        "resource": "https://cognitiveservices.azure.com", "token_type": "Bearer"
    }))
    .into_response()
}

async fn app_service_token(
    State(s): State<Arc<Entra>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some("identity-header-secret")
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"statusCode":401,"message":"Unauthorized"})),
        )
            .into_response();
    }
    if q.get("api-version").map(String::as_str) != Some("2019-08-01")
        || q.get("resource").map(String::as_str) != Some("https://cognitiveservices.azure.com")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_request"})),
        )
            .into_response();
    }
    let now = common::now_unix();
    Json(json!({
        "access_token": s.access_token, "expires_on": (now + 1800).to_string(),
        "resource": "https://cognitiveservices.azure.com", "token_type": "Bearer", "client_id": "mi-client"
    }))
    .into_response()
}

async fn fake_entra() -> (Arc<Entra>, String) {
    let s = Arc::new(Entra {
        access_token: fake_jwt(3599, "entra"),
        ..Default::default()
    });
    let addr = serve_fake(
        Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(aad_token))
            .route("/metadata/identity/oauth2/token", get(imds_token))
            .route("/msi/token", get(app_service_token))
            .with_state(Arc::clone(&s)),
    )
    .await;
    (s, format!("http://{addr}"))
}

const RID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/speech1";

fn cc_env(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_TENANT_ID", "contoso-tenant".to_string()),
        ("AZURE_CLIENT_ID", "app-id".to_string()),
        ("AZURE_CLIENT_SECRET", secret.to_string()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn entra_client_credentials_aad_form() {
    let (e, base) = fake_entra().await;
    let env = cc_env("right-secret");
    let b = start(
        &[
            "--mode",
            "entra",
            "--authority",
            &base,
            "--resource-id",
            RID,
            "--region",
            "westeurope",
        ],
        &as_refs(&env),
    )
    .await;
    let v = grant(&b).await;
    assert_eq!(
        v["token"].as_str().unwrap(),
        format!("aad#{RID}#{}", e.access_token)
    );
    assert_eq!(v["region"], "westeurope");
    assert_eq!(v["expiresIn"].as_f64(), Some(600.0), "capped by --max-ttl");
    assert!(v.get("endpoint").is_none());
    for _ in 0..3 {
        common::get(&b, TOKEN).await;
    }
    assert_eq!(
        e.calls.load(Ordering::SeqCst),
        1,
        "one upstream call per lifetime"
    );
    assert_eq!(
        e.seen.lock().unwrap()[0],
        "tenant=contoso-tenant grant=Some(\"client_credentials\") scope=Some(\"https://cognitiveservices.azure.com/.default\")"
    );
}

#[tokio::test]
async fn entra_client_credentials_custom_domain_endpoint() {
    let (e, base) = fake_entra().await;
    let env = cc_env("right-secret");
    let b = start(
        &[
            "--mode",
            "entra",
            "--authority",
            &base,
            "--endpoint",
            "https://speech1.cognitiveservices.azure.com",
            "--max-ttl",
            "1200",
        ],
        &as_refs(&env),
    )
    .await;
    let v = grant(&b).await;
    assert_eq!(v["token"].as_str().unwrap(), e.access_token);
    assert_eq!(v["endpoint"], "https://speech1.cognitiveservices.azure.com");
    assert!((1199.0..=1200.0).contains(&v["expiresIn"].as_f64().unwrap()));
}

#[tokio::test]
async fn entra_invalid_client_becomes_502() {
    let (e, base) = fake_entra().await;
    let env = cc_env("wrong-secret");
    let b = start(
        &[
            "--mode",
            "entra",
            "--authority",
            &base,
            "--resource-id",
            RID,
            "--region",
            "westeurope",
        ],
        &as_refs(&env),
    )
    .await;
    let r = common::get(&b, TOKEN).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error":"upstream","detail":"entra token endpoint answered 401 (invalid_client)"})
    );
    assert_eq!(common::get(&b, TOKEN).await.status(), 502);
    assert_eq!(
        e.calls.load(Ordering::SeqCst),
        1,
        "a failure is remembered for a few seconds"
    );
}

#[tokio::test]
async fn entra_imds_with_string_expires_in() {
    let (e, base) = fake_entra().await;
    let b = start(
        &[
            "--mode",
            "entra",
            "--imds-base",
            &base,
            "--resource-id",
            RID,
            "--region",
            "westeurope",
            "--max-ttl",
            "5000",
        ],
        &[("AZURE_CLIENT_ID", "user-assigned-id")],
    )
    .await;
    let v = grant(&b).await;
    assert_eq!(
        v["token"].as_str().unwrap(),
        format!("aad#{RID}#{}", e.access_token)
    );
    let ei = v["expiresIn"].as_f64().unwrap();
    assert!((3597.0..=3599.0).contains(&ei), "{ei}");
    assert_eq!(
        e.seen.lock().unwrap()[0],
        "client_id=Some(\"user-assigned-id\")"
    );
    // --managed-identity wins over a configured client secret
    let env = cc_env("right-secret");
    let mi = start(
        &[
            "--mode",
            "entra",
            "--managed-identity",
            "--imds-base",
            &base,
            "--authority",
            "http://127.0.0.1:9",
            "--resource-id",
            RID,
            "--region",
            "westeurope",
        ],
        &as_refs(&env),
    )
    .await;
    assert_eq!(common::get(&mi, TOKEN).await.status(), 200);
}

#[tokio::test]
async fn entra_identity_endpoint() {
    let (e, base) = fake_entra().await;
    let endpoint = format!("{base}/msi/token");
    let b = start(
        &[
            "--mode",
            "entra",
            "--resource-id",
            RID,
            "--region",
            "westeurope",
            "--max-ttl",
            "5000",
        ],
        &[
            ("IDENTITY_ENDPOINT", &endpoint),
            ("IDENTITY_HEADER", "identity-header-secret"),
        ],
    )
    .await;
    let v = grant(&b).await;
    assert_eq!(
        v["token"].as_str().unwrap(),
        format!("aad#{RID}#{}", e.access_token)
    );
    let ei = v["expiresIn"].as_f64().unwrap();
    assert!(
        (1797.0..=1800.0).contains(&ei),
        "lifetime from expires_on: {ei}"
    );
    let wrong = start(
        &[
            "--mode",
            "entra",
            "--resource-id",
            RID,
            "--region",
            "westeurope",
        ],
        &[
            ("IDENTITY_ENDPOINT", &endpoint),
            ("IDENTITY_HEADER", "nope"),
        ],
    )
    .await;
    let r = common::get(&wrong, TOKEN).await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"],
        "managed identity endpoint answered 401"
    );
}
