//! Who is asking: `--auth none`, `--auth header` (one header compared with a value from the
//! environment) or `--auth entra` (the app user's Microsoft Entra access token for the broker's
//! API, validated as Microsoft documents for web APIs: see [`entra`]).

pub mod entra;
pub mod keys;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::AuthSettings;
use crate::http::{ct_eq, json_error, with_retry_after};
use crate::secret::Secret;

pub use entra::{EntraValidator, User};

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "speech-token-broker";

/// The authenticated caller of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `--auth none`: nobody in particular.
    Anonymous,
    /// `--auth header`: whoever knows the shared header value (no individual identity).
    SharedHeader,
    /// `--auth entra`: one user of one tenant.
    User(User),
}

impl Identity {
    /// Who this is: `tid/oid` for a user, else the caller class, `header` or `anonymous` (relay
    /// tickets add the client for those: `relay::ticket_subject`).
    pub fn subject(&self) -> String {
        match self {
            Identity::User(u) => format!("{}/{}", u.tid, u.oid),
            Identity::SharedHeader => "header".to_string(),
            Identity::Anonymous => "anonymous".to_string(),
        }
    }
}

/// Why a token request was not authenticated. Descriptions are fixed strings: nothing from the
/// presented token is ever echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `--auth header`: the header is missing or wrong.
    Header,
    /// No `Authorization: Bearer …` at all (RFC 6750 §3: a challenge without error code).
    NoBearer,
    /// The bearer token is not valid (`invalid_token`).
    InvalidToken(&'static str),
    /// Valid, but without the required scope or app role (`insufficient_scope`).
    InsufficientScope(String),
    /// The signing keys cannot be obtained (Entra unreachable): 503, the client retries.
    KeysUnavailable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (challenge, detail) = match &self {
            Refusal::Header => (None, "missing or wrong app-auth header".to_string()),
            Refusal::NoBearer => (
                Some(format!("Bearer realm=\"{REALM}\"")),
                "an Entra access token for this API is required (Authorization: Bearer)".into(),
            ),
            Refusal::InvalidToken(why) => (
                Some(format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{why}\""
                )),
                why.to_string(),
            ),
            Refusal::InsufficientScope(scope) => (
                Some(format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
                )),
                format!("the token lacks the scope or app role {scope}"),
            ),
            Refusal::KeysUnavailable => {
                return with_retry_after(
                    json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "auth-unavailable",
                        Some(
                            json!({ "detail": "Entra signing keys unavailable", "retryAfter": 5 }),
                        ),
                    ),
                    5,
                );
            }
        };
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some(json!({ "detail": detail })),
        );
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        r
    }
}

/// The configured authentication.
pub enum Authenticator {
    /// `--auth none`.
    None,
    /// `--auth header`.
    Header {
        name: axum::http::HeaderName,
        value: Secret,
    },
    /// `--auth entra`.
    Entra(Box<EntraValidator>),
}

impl Authenticator {
    /// Builds the authenticator; `timeout` bounds key downloads.
    pub fn new(settings: &AuthSettings, timeout: std::time::Duration) -> Self {
        match settings {
            AuthSettings::None => Authenticator::None,
            AuthSettings::Header { name, value } => Authenticator::Header {
                name: name.clone(),
                value: value.clone(),
            },
            AuthSettings::Entra(e) => {
                Authenticator::Entra(Box::new(EntraValidator::new(e, timeout)))
            }
        }
    }

    /// `none`, `header` or `entra`.
    pub fn name(&self) -> &'static str {
        match self {
            Authenticator::None => "none",
            Authenticator::Header { .. } => "header",
            Authenticator::Entra(_) => "entra",
        }
    }

    /// Authenticates a token request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Refusal> {
        match self {
            Authenticator::None => Ok(Identity::Anonymous),
            Authenticator::Header { name, value } => {
                // Exactly one copy: with several, one request would carry several guesses.
                // Compared as SHA-256 digests in constant time: equal lengths, so the time
                // tells nothing of the secret's length either.
                let mut copies = headers.get_all(name).iter();
                let ok = match (copies.next(), copies.next()) {
                    (Some(given), None) => ct_eq(
                        &Sha256::digest(given.as_bytes()),
                        &Sha256::digest(value.expose().as_bytes()),
                    ),
                    _ => false,
                };
                if ok {
                    Ok(Identity::SharedHeader)
                } else {
                    Err(Refusal::Header)
                }
            }
            Authenticator::Entra(v) => {
                let token = bearer(headers).ok_or(Refusal::NoBearer)?;
                v.validate(token).await.map(Identity::User)
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("bearer abc.def"));
        assert_eq!(bearer(&h), Some("abc.def"));
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    /// `--auth header` took a request when any of its copies of the header matched, so one
    /// request could carry ~100 guesses of the shared value (an outside review). A request now
    /// carries the header exactly once; the one copy is compared.
    #[tokio::test]
    async fn the_shared_header_is_one_guess_per_request() {
        let auth = Authenticator::Header {
            name: axum::http::HeaderName::from_static("x-app-session"),
            value: Secret::new("s3ss10n".to_string()),
        };
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-app-session", HeaderValue::from_static(v));
            }
            h
        };
        assert!(auth.authenticate(&with(&["s3ss10n"])).await.is_ok());
        for refused in [
            &[][..],
            &["wrong"][..],
            &["s3ss10"][..],
            &["s3ss10n0"][..],
            &["guess1", "s3ss10n"][..],
            &["s3ss10n", "guess2"][..],
            &["s3ss10n", "s3ss10n"][..],
        ] {
            assert!(
                matches!(
                    auth.authenticate(&with(refused)).await,
                    Err(Refusal::Header)
                ),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn challenges_never_echo_the_token() {
        let r = Refusal::InvalidToken("token expired").into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"speech-token-broker\", error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(r.headers()["cache-control"], "no-store");
        let r = Refusal::KeysUnavailable.into_response();
        assert_eq!(r.status(), 503);
    }
}
