//! The crate's one error type.
//!
//! Every failure a caller can see is an [`Error`]. Its [`Error::kind`] is the stable,
//! machine-readable name that JavaScript sees as `error.kind`; the `Display` text is for humans.
//! No variant carries a token, a header value or a response body: an error can be logged, shown
//! or sent to telemetry without leaking a credential. Messages are `&'static str` ([`Error::message`],
//! [`Invalid::message`]; the HTTP status is appended by hand in [`Error::text`]) and the wasm
//! shell never goes through `core::fmt`: its formatting machinery costs kilobytes of every
//! user's bundle. `Display` (for native code and tests) writes the same text.

use core::fmt;

/// Why a broker answer was rejected. Each reason names what was wrong, never the offending value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The body is larger than [`crate::engine::token::MAX_BODY_BYTES`].
    BodyTooLarge,
    /// The body is empty.
    Empty,
    /// The body looks like an HTML page (typically a login page or a proxy error page).
    Html,
    /// The JSON could not be parsed.
    NotJson,
    /// A JSON field has the wrong type (for example a string where a number belongs).
    WrongType,
    /// Neither `token` nor `access_token` is present.
    MissingToken,
    /// The token is longer than [`crate::engine::token::MAX_TOKEN_BYTES`].
    TokenTooLong,
    /// A text answer does not have the shape of a token (a JWT, or `aad#<resourceId>#<JWT>`):
    /// "OK", "null", "Unauthorized" and the like.
    NotAToken,
    /// The token holds whitespace, quotes, control or non-ASCII characters.
    TokenCharacters,
    /// The lifetime is not a number between 1 second and 24 hours.
    Lifetime,
    /// The token was already unusable when its response arrived (the request took longer than
    /// the token lives).
    ExpiredOnArrival,
    /// `region` is not lowercase letters and digits.
    Region,
    /// `endpoint` is not wss/https (or ws/http on loopback), or it carries credentials.
    Endpoint,
}

/// A failure, as the JS API reports it (`Error` with a `kind` field).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Error {
    /// The broker could not be reached (offline, DNS, CORS refusal, connection reset).
    Network,
    /// The broker did not answer within the request timeout.
    Timeout,
    /// The broker answered with an HTTP status that has no more specific kind.
    Http {
        /// The HTTP status code.
        status: u16,
        /// Seconds from a `Retry-After` header (honoured on 503).
        retry_after: Option<u32>,
    },
    /// HTTP 401: the app's own session is missing or expired; retrying will not help.
    Unauthorized,
    /// HTTP 403: the caller is not allowed a token (origin not allowed, user lacks rights).
    Forbidden,
    /// HTTP 429: too many requests.
    RateLimited {
        /// Seconds from the `Retry-After` header, when the broker sent one.
        retry_after: Option<u32>,
    },
    /// The broker answered with a redirect (often to a login page); it is not followed.
    Redirected,
    /// The broker's answer is not an acceptable token response.
    InvalidResponse(Invalid),
    /// The options given to the client are invalid (found at construction, or an argument to a
    /// method). Retrying cannot fix it.
    Config(&'static str),
    /// The app's `headers` function failed at run time: it threw, rejected, or gave something
    /// that is not an object of strings (e.g. MSAL's `acquireTokenSilent` failing right after a
    /// laptop wakes, before the network is up). Retried with backoff like a network failure.
    Headers,
    /// The client was disposed.
    Disposed,
}

impl Invalid {
    /// What was wrong, for humans (never the offending value).
    pub fn message(self) -> &'static str {
        match self {
            Invalid::BodyTooLarge => "invalid token response: the response body is too large",
            Invalid::Empty => "invalid token response: the response body is empty",
            Invalid::Html => "invalid token response: the response is an HTML page, not a token",
            Invalid::NotJson => "invalid token response: the response is not valid JSON",
            Invalid::WrongType => {
                "invalid token response: a field of the response has the wrong type"
            }
            Invalid::MissingToken => "invalid token response: the response has no token",
            Invalid::TokenTooLong => "invalid token response: the token is too long",
            Invalid::NotAToken => "invalid token response: the response text is not a token",
            Invalid::TokenCharacters => {
                "invalid token response: the token holds characters a token cannot have"
            }
            Invalid::Lifetime => {
                "invalid token response: the token lifetime is out of range (1 s to 24 h)"
            }
            Invalid::ExpiredOnArrival => {
                "invalid token response: the token expired before it arrived"
            }
            Invalid::Region => {
                "invalid token response: the region is not a valid Azure region name"
            }
            Invalid::Endpoint => {
                "invalid token response: the endpoint is not a wss or https URL, or has a user name"
            }
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Invalid {}

impl Error {
    /// The message for humans, without the HTTP status of [`Error::Http`] (see [`Error::text`]).
    pub fn message(&self) -> &'static str {
        match self {
            Error::Network => "the token broker could not be reached",
            Error::Timeout => "the token broker did not answer in time",
            Error::Http { .. } => "the token broker answered HTTP ",
            Error::Unauthorized => {
                "the token broker refused the request (HTTP 401): the user's session may have ended"
            }
            Error::Forbidden => "the token broker denied access (HTTP 403)",
            Error::RateLimited { .. } => "the token broker is rate limiting requests (HTTP 429)",
            Error::Redirected => "the token broker answered with a redirect, which is not followed",
            Error::InvalidResponse(reason) => reason.message(),
            Error::Config(message) => message,
            Error::Headers => {
                "the headers function threw, rejected, or gave a value that is not an object of strings"
            }
            Error::Disposed => "the token client was disposed",
        }
    }

    /// The full message: [`Error::message`], plus the status of [`Error::Http`] written with
    /// no formatting machinery. A [`Error::Config`] message stands alone: it names the option
    /// or the argument it is about (not every one is an option: `on()`'s listener, `attach()`'s
    /// target).
    pub fn text(&self) -> String {
        let mut text = String::new();
        text.push_str(self.message());
        if let Error::Http { status, .. } = self {
            let mut digits = [b'0'; 5];
            let mut n = *status;
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            digits[i..].iter().for_each(|&d| text.push(char::from(d)));
        }
        text
    }

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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for Error {}

impl From<Invalid> for Error {
    fn from(reason: Invalid) -> Error {
        Error::InvalidResponse(reason)
    }
}

/// A header value of 1 to 9 ASCII digits, optional whitespace around (HTTP's OWS), as a number;
/// `None` for anything else: `Content-Length`, and `Retry-After` in its delta-seconds form (the
/// HTTP-date form is read by the shell with the browser's date parser, then
/// [`retry_after_from_date`]). A byte loop: `str::parse` and `trim()` would link generic integer
/// parsing and a Unicode whitespace table into every bundle.
pub fn parse_digits(value: &str) -> Option<u32> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 9 {
        return None;
    }
    value.bytes().try_fold(0u32, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// A `Retry-After` HTTP date (`date_ms`) as whole seconds from `now_ms`, which should be the
/// broker's own `Date` when known (RFC 9110 §10.2.3: the two dates come from the same clock):
/// rounded up, a past date is 0, an unparsable one (`NaN`) is `None`.
pub fn retry_after_from_date(date_ms: f64, now_ms: f64) -> Option<u32> {
    let seconds = ((date_ms - now_ms) / 1000.0).ceil();
    // `as` saturates: a past date is 0
    seconds.is_finite().then_some(seconds as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_dates_count_whole_seconds_from_the_brokers_clock() {
        assert_eq!(retry_after_from_date(31_000.0, 1_000.0), Some(30));
        assert_eq!(retry_after_from_date(31_001.0, 1_000.0), Some(31));
        assert_eq!(retry_after_from_date(0.0, 1_000.0), Some(0));
        assert_eq!(retry_after_from_date(f64::NAN, 1_000.0), None);
    }

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
    fn texts_are_static_with_the_http_status_appended() {
        assert_eq!(
            Error::from_status(503, None).text(),
            "the token broker answered HTTP 503"
        );
        assert_eq!(
            Error::from_status(0, None).to_string(),
            "the token broker answered HTTP 0"
        );
        assert!(Error::from(Invalid::NotJson)
            .text()
            .contains("not valid JSON"));
        assert_eq!(Error::Config("x").text(), "x");
    }

    #[test]
    fn retry_after_accepts_only_delta_seconds() {
        assert_eq!(parse_digits(" 12 "), Some(12));
        assert_eq!(parse_digits("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_digits("-1"), None);
        assert_eq!(parse_digits(""), None);
        assert_eq!(parse_digits("99999999999"), None);
    }
}
