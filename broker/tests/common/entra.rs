//! A loopback fake of Microsoft Entra ID as a web API sees it: the tenant's OpenID configuration
//! (`/{tenant}/v2.0/.well-known/openid-configuration`) and its signing keys (`jwks_uri`), plus a
//! minting helper that signs user access tokens with RS256 test keys (`tests/fixtures/`).
//!
//! Shapes follow Microsoft's documentation ("Access tokens in the Microsoft identity platform",
//! "OpenID Connect on the Microsoft identity platform"): v2 issuer
//! `https://login.microsoftonline.com/{tid}/v2.0` (here `{base}/{tid}/v2.0`), v1 issuer
//! `https://sts.windows.net/{tid}/`, claims `aud`, `iss`, `tid`, `oid`, `scp` / `roles`, `exp`, `nbf`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
/// The broker API's app registration: client ID (v2 `aud`) and App ID URI (v1 `aud`).
pub const API_CLIENT_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub const API_APP_ID_URI: &str = "api://speech-broker";
pub const SCOPE: &str = "Speech.Token";

pub const KEY1_PEM: &str = include_str!("../fixtures/test-rsa-1.pem");
pub const KEY1_PUB_PEM: &str = include_str!("../fixtures/test-rsa-1.pub.pem");
pub const KEY1_JWK: &str = include_str!("../fixtures/test-rsa-1.jwk.json");
pub const KEY2_PEM: &str = include_str!("../fixtures/test-rsa-2.pem");
pub const KEY2_JWK: &str = include_str!("../fixtures/test-rsa-2.jwk.json");
pub const KID1: &str = "test-key-1";
pub const KID2: &str = "test-key-2";

pub struct FakeEntra {
    pub base: String,
    pub keys: Mutex<Vec<Value>>,
    pub config_fetches: AtomicUsize,
    pub key_fetches: AtomicUsize,
}

impl FakeEntra {
    pub fn publish(&self, jwk: &str) {
        self.keys
            .lock()
            .unwrap()
            .push(serde_json::from_str(jwk).unwrap());
    }
    pub fn key_fetches(&self) -> usize {
        self.key_fetches.load(Ordering::SeqCst)
    }
    /// The v2 issuer of `tid` as this fake's OpenID configuration states it.
    pub fn issuer_v2(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.base)
    }
    /// Broker flags for `--auth entra` against this fake.
    pub fn broker_args(&self) -> Vec<String> {
        [
            "--auth",
            "entra",
            "--auth-authority",
            &self.base,
            "--auth-tenant",
            TENANT,
            "--auth-audience",
            API_CLIENT_ID,
            "--auth-audience",
            API_APP_ID_URI,
            "--auth-scope",
            SCOPE,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

async fn openid_configuration(
    State(e): State<Arc<FakeEntra>>,
    Path(tenant): Path<String>,
) -> Json<Value> {
    e.config_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "token_endpoint": format!("{}/{tenant}/oauth2/v2.0/token", e.base),
        "jwks_uri": format!("{}/{tenant}/discovery/v2.0/keys", e.base),
        "issuer": format!("{}/{tenant}/v2.0", e.base),
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
    }))
}

async fn keys(State(e): State<Arc<FakeEntra>>) -> Json<Value> {
    e.key_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "keys": *e.keys.lock().unwrap() }))
}

/// Starts the fake with key 1 published.
pub async fn fake_entra() -> Arc<FakeEntra> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let e = Arc::new(FakeEntra {
        base: format!("http://{addr}"),
        keys: Mutex::new(Vec::new()),
        config_fetches: AtomicUsize::new(0),
        key_fetches: AtomicUsize::new(0),
    });
    e.publish(KEY1_JWK);
    let router = Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(keys))
        .with_state(Arc::clone(&e));
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    e
}

/// Claims of a valid v2 user token for the broker API, issued now for one hour.
pub fn user_claims(e: &FakeEntra, oid: &str) -> Value {
    let now = super::now_unix();
    json!({
        "aud": API_CLIENT_ID,
        "iss": e.issuer_v2(TENANT),
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "tid": TENANT,
        "oid": oid,
        "sub": format!("sub-{oid}"),
        "scp": format!("User.Read {SCOPE}"),
        "ver": "2.0",
        "preferred_username": "someone@example.com",
    })
}

/// RS256 with key 1 (kid `test-key-1`).
pub fn sign(claims: &Value) -> String {
    sign_with(claims, KEY1_PEM, KID1)
}

pub fn sign_with(claims: &Value, pem: &str, kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_string());
    encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The classic key-confusion attack: HS256 with the RSA *public* key as the HMAC secret.
pub fn sign_hs256_with_public_key(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(KID1.to_string());
    encode(
        &h,
        claims,
        &EncodingKey::from_secret(KEY1_PUB_PEM.as_bytes()),
    )
    .unwrap()
}

/// `alg: none`, no signature.
pub fn unsigned(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let h = B64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{KID1}"}}"#));
    let p = B64.encode(serde_json::to_vec(claims).unwrap());
    format!("{h}.{p}.")
}
