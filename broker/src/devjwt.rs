//! Dev-mode tokens: HS256 JWTs signed with a random per-process key, and their verification
//! (used by the fake Speech service).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

pub const DEV_ISSUER: &str = "speech-token-broker-dev";
pub const DEV_AUDIENCE: &str = "speech";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevClaims {
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// Result of checking a token presented to the fake Speech service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted { jti: String },
    Expired { jti: String },
    BadSignature { jti: Option<String> },
    Missing,
    Malformed,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Accepted { .. } => "accepted",
            Verdict::Expired { .. } => "expired",
            Verdict::BadSignature { .. } => "bad-signature",
            Verdict::Missing => "missing",
            Verdict::Malformed => "malformed",
        }
    }
    pub fn jti(&self) -> Option<&str> {
        match self {
            Verdict::Accepted { jti } | Verdict::Expired { jti } => Some(jti),
            Verdict::BadSignature { jti } => jti.as_deref(),
            _ => None,
        }
    }
}

pub struct DevSigner {
    key: Zeroizing<[u8; 32]>,
}

impl DevSigner {
    pub fn new_random() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut key[..]).expect("OS random number generator");
        DevSigner { key }
    }

    #[cfg(test)]
    pub fn with_key(key: [u8; 32]) -> Self {
        DevSigner {
            key: Zeroizing::new(key),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]).expect("HMAC accepts any key length")
    }

    /// Signs a token issued at `now_unix` and valid for `ttl` seconds.
    pub fn sign(&self, now_unix: u64, ttl: u64) -> (String, DevClaims) {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).expect("OS random number generator");
        let claims = DevClaims {
            iss: DEV_ISSUER.into(),
            aud: DEV_AUDIENCE.into(),
            iat: now_unix,
            exp: now_unix + ttl,
            jti: hex::encode(jti),
        };
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        (format!("{signing_input}.{sig}"), claims)
    }

    /// Checks signature (constant time) and `exp > now_unix`.
    pub fn verify(&self, token: &str, now_unix: u64) -> Verdict {
        let token = token.trim();
        if token.is_empty() {
            return Verdict::Missing;
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Verdict::Malformed;
        };
        let (Ok(hb), Ok(pb), Ok(sig)) = (B64.decode(h), B64.decode(p), B64.decode(s)) else {
            return Verdict::Malformed;
        };
        let Ok(header) = serde_json::from_slice::<serde_json::Value>(&hb) else {
            return Verdict::Malformed;
        };
        let claims = serde_json::from_slice::<DevClaims>(&pb).ok();
        let jti = claims.as_ref().map(|c| c.jti.clone());
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Verdict::BadSignature { jti };
        }
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        if mac.verify_slice(&sig).is_err() {
            return Verdict::BadSignature { jti };
        }
        let Some(claims) = claims else {
            return Verdict::Malformed;
        };
        if claims.iss != DEV_ISSUER || claims.aud != DEV_AUDIENCE {
            return Verdict::BadSignature {
                jti: Some(claims.jti),
            };
        }
        if claims.exp > now_unix {
            Verdict::Accepted { jti: claims.jti }
        } else {
            Verdict::Expired { jti: claims.jti }
        }
    }
}

/// Reads `iat`/`exp` from a JWT payload without verifying it (for lifetimes of upstream tokens).
pub fn unverified_lifetime(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iat = v.get("iat")?.as_u64()?;
    let exp = v.get("exp")?.as_u64()?;
    exp.checked_sub(iat).filter(|l| (1..=86_400).contains(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = DevSigner::with_key([7; 32]);
        let (tok, claims) = s.sign(1_000, 600);
        assert_eq!(claims.exp, 1_600);
        assert_eq!(claims.jti.len(), 32);
        assert_eq!(
            s.verify(&tok, 1_599),
            Verdict::Accepted {
                jti: claims.jti.clone()
            }
        );
        assert_eq!(
            s.verify(&tok, 1_600),
            Verdict::Expired {
                jti: claims.jti.clone()
            }
        );
        assert_eq!(unverified_lifetime(&tok), Some(600));
    }

    #[test]
    fn rejects_other_key_and_garbage() {
        let a = DevSigner::with_key([1; 32]);
        let b = DevSigner::with_key([2; 32]);
        let (tok, claims) = a.sign(1_000, 600);
        assert_eq!(
            b.verify(&tok, 1_001),
            Verdict::BadSignature {
                jti: Some(claims.jti)
            }
        );
        assert_eq!(a.verify("", 0), Verdict::Missing);
        assert_eq!(a.verify("abc", 0), Verdict::Malformed);
        assert_eq!(a.verify("a.b.c.d", 0), Verdict::Malformed);
        assert_eq!(a.verify("!!.??.**", 0), Verdict::Malformed);
        // tampered payload
        let mut parts: Vec<&str> = tok.split('.').collect();
        let forged = B64.encode(br#"{"iss":"speech-token-broker-dev","aud":"speech","iat":0,"exp":99999999999,"jti":"x"}"#);
        parts[1] = &forged;
        assert!(matches!(
            a.verify(&parts.join("."), 1_001),
            Verdict::BadSignature { .. }
        ));
        // alg none
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none"}"#),
            tok.split('.').nth(1).unwrap()
        );
        assert!(!matches!(a.verify(&none, 1_001), Verdict::Accepted { .. }));
    }
}
