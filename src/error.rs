//! The crate's one error type.
//!
//! Every failure a caller can see is an [`Error`]. Its [`Error::kind`] is the stable,
//! machine-readable name that JavaScript sees as `error.kind`; the `Display` text is for humans.
//! No variant carries a token, a header value or a response body: an error can be logged, shown
//! or sent to telemetry without leaking a credential. Messages are static strings (plus integers)
//! on purpose: float and string formatting machinery costs kilobytes of wasm.

/// Why a broker answer was rejected. Each reason names what was wrong, never the offending value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The body is larger than [`crate::engine::token::MAX_BODY_BYTES`].
    #[error("the response body is too large")]
    BodyTooLarge,
    /// The body is empty.
    #[error("the response body is empty")]
    Empty,
    /// The body looks like an HTML page (typically a login page or a proxy error page).
    #[error("the response is an HTML page, not a token")]
    Html,
    /// The JSON could not be parsed.
    #[error("the response is not valid JSON")]
    NotJson,
    /// A JSON field has the wrong type (for example a string where a number belongs).
    #[error("a field of the response has the wrong type")]
    WrongType,
    /// Neither `token` nor `access_token` is present.
    #[error("the response has no token")]
    MissingToken,
    /// The token is longer than [`crate::engine::token::MAX_TOKEN_BYTES`].
    #[error("the token is too long")]
    TokenTooLong,
    /// A text answer does not have the shape of a token (a JWT, or `aad#<resourceId>#<JWT>`):
    /// "OK", "null", "Unauthorized" and the like.
    #[error("the response text is not a token")]
    NotAToken,
    /// The token holds whitespace, quotes, control or non-ASCII characters.
    #[error("the token holds characters a token cannot have")]
    TokenCharacters,
    /// The lifetime is not a number between 1 second and 24 hours.
    #[error("the token lifetime is out of range (1 s to 24 h)")]
    Lifetime,
    /// The token was already unusable when its response arrived (the request took longer than
    /// the token lives).
    #[error("the token expired before it arrived")]
    ExpiredOnArrival,
    /// `region` is not lowercase letters and digits.
    #[error("the region is not a valid Azure region name")]
    Region,
    /// `endpoint` is not wss/https (or ws/http on loopback), or it carries credentials.
    #[error("the endpoint is not a wss or https URL")]
    Endpoint,
}

/// A failure, as the JS API reports it (`Error` with a `kind` field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The broker could not be reached (offline, DNS, CORS refusal, connection reset).
    #[error("the token broker could not be reached")]
    Network,
    /// The broker did not answer within the request timeout.
    #[error("the token broker did not answer in time")]
    Timeout,
    /// The broker answered with an HTTP status that has no more specific kind.
    #[error("the token broker answered HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// Seconds from a `Retry-After` header (honoured on 503).
        retry_after: Option<u32>,
    },
    /// HTTP 401: the app's own session is missing or expired; retrying will not help.
    #[error("the token broker refused the request (HTTP 401): the user's session may have ended")]
    Unauthorized,
    /// HTTP 403: the caller is not allowed a token (origin not allowed, user lacks rights).
    #[error("the token broker denied access (HTTP 403)")]
    Forbidden,
    /// HTTP 429: too many requests.
    #[error("the token broker is rate limiting requests (HTTP 429)")]
    RateLimited {
        /// Seconds from the `Retry-After` header, when the broker sent one.
        retry_after: Option<u32>,
    },
    /// The broker answered with a redirect (often to a login page); it is not followed.
    #[error("the token broker answered with a redirect, which is not followed")]
    Redirected,
    /// The broker's answer is not an acceptable token response.
    #[error("invalid token response: {0}")]
    InvalidResponse(Invalid),
    /// The options given to the client are invalid (found at construction, or an argument to a
    /// method). Retrying cannot fix it.
    #[error("invalid option: {0}")]
    Config(&'static str),
    /// The app's `headers` function failed at run time: it threw, rejected, or gave something
    /// that is not an object of strings (e.g. MSAL's `acquireTokenSilent` failing right after a
    /// laptop wakes, before the network is up). Retried with backoff like a network failure.
    #[error(
        "the headers function threw, rejected, or gave a value that is not an object of strings"
    )]
    Headers,
    /// The client was disposed.
    #[error("the token client was disposed")]
    Disposed,
}

impl Error {
    /// The stable name JavaScript sees as `error.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Network => "network",
            Error::Timeout => "timeout",
            Error::Http { .. } => "http",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden => "forbidden",
            Error::RateLimited { .. } => "rate-limited",
            Error::Redirected => "redirected",
            Error::InvalidResponse(_) => "invalid-response",
            Error::Config(_) => "config",
            Error::Headers => "headers",
            Error::Disposed => "disposed",
        }
    }

    /// The HTTP status behind this error, when there is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            Error::Unauthorized => Some(401),
            Error::Forbidden => Some(403),
            Error::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Seconds the broker asked us to wait (`Retry-After`), when it did.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::Http { retry_after, .. } | Error::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Maps an HTTP error status (and its `Retry-After` seconds) to the right kind.
    pub fn from_status(status: u16, retry_after: Option<u32>) -> Error {
        match status {
            401 => Error::Unauthorized,
            403 => Error::Forbidden,
            429 => Error::RateLimited { retry_after },
            300..=399 => Error::Redirected,
            _ => Error::Http {
                status,
                retry_after,
            },
        }
    }
}

impl From<Invalid> for Error {
    fn from(reason: Invalid) -> Error {
        Error::InvalidResponse(reason)
    }
}

/// Parses a `Retry-After` header value in its delta-seconds form. The HTTP-date form is rare
/// for token endpoints and is treated as absent (the caller then backs off exponentially).
pub fn parse_retry_after(value: &str) -> Option<u32> {
    let value = value.trim();
    if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(Error::from_status(401, None).kind(), "unauthorized");
        assert_eq!(Error::from_status(403, None).kind(), "forbidden");
        assert_eq!(Error::from_status(429, Some(7)).retry_after(), Some(7));
        assert_eq!(Error::from_status(302, None).kind(), "redirected");
        assert_eq!(Error::from_status(503, Some(2)).status(), Some(503));
        assert_eq!(Error::from_status(500, None).kind(), "http");
    }

    #[test]
    fn retry_after_accepts_only_delta_seconds() {
        assert_eq!(parse_retry_after(" 12 "), Some(12));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("99999999999"), None);
    }
}
