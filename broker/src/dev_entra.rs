//! dev mode `--dev-entra`: a stand-in for Microsoft Entra ID served by the dev broker itself, so
//! that the demo runs the browser client with an MSAL-style `headers` provider against
//! `--auth entra` without an Azure tenant.
//!
//! At start it generates an RSA-2048 key (never stored) and serves, under `/dev-entra/`:
//! the tenant's OpenID configuration and JWKS (what the broker's own validator downloads, over
//! loopback HTTP like any authority), and a token endpoint that plays MSAL for the demo page
//! (`POST …/oauth2/v2.0/token` → a v2 access token for the broker's API, one hour). Loopback,
//! unproxied requests only, like the admin routes; dev mode only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use crate::config::EntraAuthSettings;
use crate::http::{json_error, json_response};
use crate::upstream::now_unix;

/// The dev tenant's ID.
pub const DEV_TENANT: &str = "0d0d0d0d-0000-4000-8000-00000000d0e0";
/// The broker API's application (client) ID in the dev tenant.
pub const DEV_API_CLIENT_ID: &str = "0d0d0d0d-0000-4000-8000-0000000a1c1d";
/// The broker API's App ID URI.
pub const DEV_APP_ID_URI: &str = "api://speech-broker";
/// The delegated permission the broker requires.
pub const DEV_SCOPE: &str = "Speech.Token";
/// The demo user's object ID.
pub const DEV_USER_OID: &str = "0d0d0d0d-0000-4000-8000-00000000a5e1";
/// Lifetime of the user tokens it mints: Entra's default access-token lifetime is 60–90 minutes.
pub const DEV_USER_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// RSA modulus size: what Entra uses for its signing keys.
const KEY_BITS: usize = 2048;

/// The dev Entra stand-in.
pub struct DevEntra {
    authority: String,
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl DevEntra {
    /// Generates a fresh key; `authority` is `http://<broker>/dev-entra`.
    pub fn generate(authority: String) -> anyhow::Result<DevEntra> {
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, KEY_BITS)?;
        let der = private.to_pkcs1_der()?;
        let key = EncodingKey::from_rsa_der(der.as_bytes());
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let kid = format!("dev-{}", hex::encode(id));
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": B64.encode(private.n().to_bytes_be()),
            "e": B64.encode(private.e().to_bytes_be()),
        });
        Ok(DevEntra {
            authority,
            kid,
            key,
            jwk,
        })
    }

    /// `--auth entra` settings that trust this stand-in.
    pub fn auth_settings(&self) -> EntraAuthSettings {
        EntraAuthSettings {
            authority: self.authority.clone(),
            tenants: vec![DEV_TENANT.into()],
            audiences: vec![DEV_API_CLIENT_ID.into(), DEV_APP_ID_URI.into()],
            scopes: vec![DEV_SCOPE.into()],
            roles: Vec::new(),
            keys_min_refetch: Duration::from_secs(60),
        }
    }

    /// A v2 access token for the broker API, as Entra would issue it to the demo user.
    pub fn mint(&self) -> String {
        let now = now_unix();
        let claims = json!({
            "aud": DEV_API_CLIENT_ID,
            "iss": format!("{}/{DEV_TENANT}/v2.0", self.authority),
            "iat": now, "nbf": now, "exp": now + DEV_USER_TOKEN_LIFETIME.as_secs(),
            "tid": DEV_TENANT, "oid": DEV_USER_OID, "sub": "dev-user",
            "scp": DEV_SCOPE, "ver": "2.0", "name": "Demo User",
        });
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(self.kid.clone());
        encode(&h, &claims, &self.key).unwrap_or_default()
    }
}

/// `None` for the dev tenant, else the 404 to answer.
fn unknown_tenant(tenant: &str) -> Option<Response> {
    (tenant != DEV_TENANT).then(|| json_error(StatusCode::NOT_FOUND, "not-found", None))
}

/// `GET /dev-entra/{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(e): State<Arc<DevEntra>>,
    Path(tenant): Path<String>,
) -> Response {
    if let Some(r) = unknown_tenant(&tenant) {
        return r;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": format!("{}/{tenant}/v2.0", e.authority),
            "jwks_uri": format!("{}/{tenant}/discovery/v2.0/keys", e.authority),
            "token_endpoint": format!("{}/{tenant}/oauth2/v2.0/token", e.authority),
            "id_token_signing_alg_values_supported": ["RS256"],
        }),
    )
}

/// `GET /dev-entra/{tenant}/discovery/v2.0/keys`.
pub async fn keys(State(e): State<Arc<DevEntra>>, Path(tenant): Path<String>) -> Response {
    if let Some(r) = unknown_tenant(&tenant) {
        return r;
    }
    json_response(StatusCode::OK, &json!({ "keys": [e.jwk] }))
}

/// `POST /dev-entra/{tenant}/oauth2/v2.0/token`: the demo user's access token for the broker API.
pub async fn token(State(e): State<Arc<DevEntra>>, Path(tenant): Path<String>) -> Response {
    if let Some(r) = unknown_tenant(&tenant) {
        return r;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "access_token": e.mint(),
            "expires_in": DEV_USER_TOKEN_LIFETIME.as_secs(),
            "scope": format!("{DEV_APP_ID_URI}/{DEV_SCOPE}"),
        }),
    )
}

/// `GET /dev-entra/msal-config`: what the demo page's MSAL stand-in needs.
pub async fn msal_config(State(e): State<Arc<DevEntra>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "tenant": DEV_TENANT,
            "clientId": DEV_API_CLIENT_ID,
            "scopes": [format!("{DEV_APP_ID_URI}/{DEV_SCOPE}")],
            "tokenEndpoint": format!("/dev-entra/{DEV_TENANT}/oauth2/v2.0/token"),
            "authority": e.authority,
        }),
    )
}
