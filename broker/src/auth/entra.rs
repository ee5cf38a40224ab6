//! `--auth entra`: validation of the app user's Microsoft Entra access token for the broker's
//! API, following Microsoft's rules for web APIs ("Access tokens in the Microsoft identity
//! platform", "Protected web API: verify scopes and app roles"):
//!
//! - RS256 signature by one of the tenant's published keys ([`super::keys`]); no other
//!   algorithm is accepted (`alg: none` and HS256 key confusion fail here);
//! - `aud`: the API's application (client) ID or App ID URI;
//! - `exp` / `nbf` with at most [`CLOCK_SKEW`] of leeway;
//! - `tid` in the tenant allow-list, and `iss` the v2 (`{authority}/{tid}/v2.0`) or v1
//!   (`https://sts.windows.net/{tid}/`) issuer of that very tenant;
//! - a required delegated permission in `scp` or an app role in `roles`;
//! - the caller is `tid` + `oid`; `upn`, `email` and `preferred_username` are never used
//!   (they are mutable and not unique across tenants).

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde::Deserialize;

use super::keys::{KeyError, SigningKeys};
use super::Refusal;
use crate::config::EntraAuthSettings;
use crate::outbound::http_client;

/// Leeway on `exp` and `nbf`. Source: Microsoft.IdentityModel's default `ClockSkew` (5 minutes),
/// the upper bound the issue allows.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Issuer of v1 tokens (`https://sts.windows.net/{tid}/`, global cloud).
pub const V1_ISSUER_PREFIX: &str = "https://sts.windows.net/";

/// An authenticated user: tenant ID and object ID (stable, unique per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub tid: String,
    pub oid: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    tid: Option<String>,
    oid: Option<String>,
    scp: Option<String>,
    roles: Option<Vec<String>>,
}

/// Validates user tokens for one API registration.
pub struct EntraValidator {
    authority: String,
    tenants: Vec<String>,
    scopes: Vec<String>,
    roles: Vec<String>,
    validation: Validation,
    keys: SigningKeys,
}

impl EntraValidator {
    /// Builds the validator; keys are downloaded on first use.
    pub fn new(s: &EntraAuthSettings, timeout: Duration) -> Self {
        // One tenant: its own metadata. Several: the multi-tenant `organizations` metadata, whose
        // keys are the common signing keys.
        let tenant = match s.tenants.as_slice() {
            [one] => one.as_str(),
            _ => "organizations",
        };
        let metadata_url = format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            s.authority
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&s.audiences);
        validation.required_spec_claims = ["exp", "aud", "iss"]
            .iter()
            .map(|c| c.to_string())
            .collect::<HashSet<_>>();
        EntraValidator {
            authority: s.authority.clone(),
            tenants: s.tenants.clone(),
            scopes: s.scopes.clone(),
            roles: s.roles.clone(),
            validation,
            keys: SigningKeys::new(
                http_client(&metadata_url, timeout),
                metadata_url,
                s.keys_min_refetch,
            ),
        }
    }

    /// Key downloads attempted so far.
    pub fn key_downloads(&self) -> u64 {
        self.keys.downloads()
    }

    /// Validates `token`; the caller's identity on success.
    pub async fn validate(&self, token: &str) -> Result<User, Refusal> {
        let header = decode_header(token).map_err(|_| Refusal::InvalidToken("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(Refusal::InvalidToken("unexpected signing algorithm"));
        }
        let kid = header
            .kid
            .ok_or(Refusal::InvalidToken("token has no key id"))?;
        let key = self.keys.get(&kid).await.map_err(|e| match e {
            KeyError::UnknownKid => Refusal::InvalidToken("unknown signing key"),
            KeyError::Unavailable => Refusal::KeysUnavailable,
        })?;
        let claims = decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| {
                Refusal::InvalidToken(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not yet valid",
                    ErrorKind::InvalidAudience => "token is for another audience",
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                    _ => "invalid token",
                })
            })?
            .claims;
        let tid = claims
            .tid
            .map(|t| t.to_ascii_lowercase())
            .ok_or(Refusal::InvalidToken("token has no tid"))?;
        if !self.tenants.contains(&tid) {
            return Err(Refusal::InvalidToken("tenant not allowed"));
        }
        let v2 = format!("{}/{tid}/v2.0", self.authority);
        let v1 = format!("{V1_ISSUER_PREFIX}{tid}/");
        if !(claims.iss.eq_ignore_ascii_case(&v2) || claims.iss.eq_ignore_ascii_case(&v1)) {
            return Err(Refusal::InvalidToken("wrong issuer"));
        }
        let oid = claims
            .oid
            .filter(|o| !o.is_empty())
            .ok_or(Refusal::InvalidToken("token has no oid"))?;
        let has_scope = claims.scp.as_deref().is_some_and(|scp| {
            scp.split_whitespace()
                .any(|s| self.scopes.iter().any(|want| want == s))
        });
        let has_role = claims
            .roles
            .as_ref()
            .is_some_and(|r| r.iter().any(|have| self.roles.contains(have)));
        if !(has_scope || has_role) {
            let wanted = self
                .scopes
                .first()
                .or(self.roles.first())
                .cloned()
                .unwrap_or_default();
            return Err(Refusal::InsufficientScope(wanted));
        }
        Ok(User { tid, oid })
    }
}
