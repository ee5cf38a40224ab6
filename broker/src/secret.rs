//! A string that must never be printed: redacting `Debug`/`Display`, its own buffer zeroized on
//! drop (copies made to send it, such as HTTP bodies and headers, are not).

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Holds a token, key or client secret. Its `Debug`/`Display` print a fingerprint, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself. Call sites are the only places a secret leaves this type: HTTP bodies
    /// and upstream request headers/forms. Never pass the result to a log macro.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// First 8 hex digits of SHA-256: enough to correlate log lines, useless to an attacker.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

/// First 8 hex digits of the SHA-256 of `value`.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    hex::encode(&digest[..4])
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(sha256:{}…)", self.fingerprint())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted sha256:{}]", self.fingerprint())
    }
}

/// Whether `s` is acceptable as a bearer token: the browser client's own rule (1..=16 KiB of
/// printable ASCII without spaces, quotes or backslashes), so that the broker never hands out
/// what the client would refuse.
pub use speech_token_client::engine::token::is_valid_token_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("super-secret-value-123");
        assert!(!format!("{s:?}").contains("super-secret"));
        assert!(!format!("{s}").contains("super-secret"));
        assert_eq!(s.fingerprint().len(), 8);
        assert!(format!("{s}").contains(&s.fingerprint()));
    }

    #[test]
    fn token_text_rules() {
        assert!(is_valid_token_text("eyJ.abc.def"));
        assert!(is_valid_token_text("aad#/subscriptions/x#tok"));
        assert!(!is_valid_token_text(""));
        assert!(!is_valid_token_text("a b"));
        assert!(!is_valid_token_text("a\"b"));
        assert!(!is_valid_token_text("a'b"), "the client refuses ' too");
        assert!(!is_valid_token_text("a\nb"));
        assert!(!is_valid_token_text(&"a".repeat(16 * 1024 + 1)));
    }
}
