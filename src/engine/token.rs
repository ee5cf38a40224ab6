//! The token itself and the strict parsing of a broker's answer into a [`Grant`].
//!
//! A [`Token`] never prints its value (`Debug`/`Display` are redacted) and wipes its bytes when
//! dropped. A [`Grant`] is a validated broker answer: a token, its lifetime, and optionally the
//! region or endpoint the Speech SDK should use. JSON parsing is delegated to a [`Json`]
//! implementation so that the wasm build can use the browser's own `JSON.parse` and read fields
//! with `Reflect` (no JSON parser and no serde in the bundle: serde's error formatting alone pulls
//! in float printing, ~14 KB), while native tests use serde_json.

use core::fmt;

use zeroize::Zeroize;

use crate::error::{Error, Invalid};

/// Largest accepted response body. Token answers are a few KB; anything bigger is not one.
/// Source: DESIGN.md, "Validate strictly ... body ≤ 64 KiB".
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted token. Entra access tokens with many claims reach ~4 KB; `aad#` adds an ARM
/// resource id. Source: DESIGN.md, "token ... ≤ 16 KiB".
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Shortest lifetime a broker may declare. Source: DESIGN.md, "lifetime 1 s..24 h".
pub const MIN_LIFETIME_MS: f64 = 1_000.0;
/// Longest lifetime a broker may declare. Source: DESIGN.md, "lifetime 1 s..24 h".
pub const MAX_LIFETIME_MS: f64 = 86_400_000.0;
/// Lifetime assumed when neither the broker nor the token says: issueToken tokens live
/// 10 minutes. Source: Azure Speech docs, "Authentication with Microsoft Entra ID / access tokens".
pub const DEFAULT_LIFETIME_MS: f64 = 600_000.0;
/// Longest accepted endpoint URL.
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// Longest accepted region name (real ones are under 25 characters).
pub const MAX_REGION_BYTES: usize = 64;

/// A bearer token for the Speech service, held in memory only.
///
/// Why a newtype: so that the value cannot end up in a log line or an error message by accident
/// (`{:?}` prints `Token(<redacted, N bytes>)`), and so that dropping it overwrites its bytes.
pub struct Token {
    secret: String,
}

impl Token {
    /// Wraps an already validated token string.
    fn new(secret: String) -> Token {
        Token { secret }
    }

    /// The token's value, for the one place that must hand it over (the JS boundary).
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// Length in bytes (safe to show).
    pub fn len(&self) -> usize {
        self.secret.len()
    }

    /// Whether the token is empty (never true for a validated token).
    pub fn is_empty(&self) -> bool {
        self.secret.is_empty()
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted token>")
    }
}

/// A validated broker answer.
#[derive(Debug)]
pub struct Grant {
    /// The token, exactly as the Speech SDK must receive it (`aad#…#…` forms pass unchanged).
    pub token: Token,
    /// How long the token lives, in milliseconds, counted from when the request was sent.
    pub lifetime_ms: f64,
    /// The Azure region, for `SpeechConfig.fromAuthorizationToken(token, region)`.
    pub region: Option<String>,
    /// A custom-domain or private endpoint, for `SpeechConfig.fromEndpoint(url)`.
    pub endpoint: Option<String>,
}

/// Why a JSON text could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all.
    Syntax,
    /// JSON, but not an object.
    Shape,
}

/// The value of one field of a JSON object, as far as token parsing cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Missing or `null`.
    Absent,
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// Anything else (boolean, array, object).
    Other,
}

/// Decodes a JSON object and reads its fields. The wasm shell implements it with `JSON.parse`
/// and `Reflect.get`; native code with serde_json.
pub trait Json {
    /// A parsed JSON object.
    type Object;
    /// Parses `text`, which must be a JSON object.
    fn parse_object(&self, text: &str) -> Result<Self::Object, JsonError>;
    /// One field of the object.
    fn field(&self, object: &Self::Object, key: &str) -> Field;
}

/// Reads an optional string field; any other type is an error.
fn string_field<J: Json>(
    json: &J,
    object: &J::Object,
    key: &str,
) -> Result<Option<String>, Invalid> {
    match json.field(object, key) {
        Field::Absent => Ok(None),
        Field::Str(s) => Ok(Some(s)),
        Field::Num(_) | Field::Other => Err(Invalid::WrongType),
    }
}

/// Reads an optional number field; any other type is an error.
fn number_field<J: Json>(json: &J, object: &J::Object, key: &str) -> Result<Option<f64>, Invalid> {
    match json.field(object, key) {
        Field::Absent => Ok(None),
        Field::Num(n) => Ok(Some(n)),
        Field::Str(_) | Field::Other => Err(Invalid::WrongType),
    }
}

/// The JSON a broker may answer. Unknown fields are ignored (forward compatible); known fields
/// with the wrong type are an error.
struct Reply {
    token: Option<String>,
    expires_in: Option<f64>,
    expires_on: Option<f64>,
    region: Option<String>,
    endpoint: Option<String>,
}

impl Reply {
    fn read<J: Json>(json: &J, object: &J::Object) -> Result<Reply, Invalid> {
        let token = string_field(json, object, "token")?;
        let access_token = string_field(json, object, "access_token")?;
        let expires_in = number_field(json, object, "expiresIn")?;
        let expires_in_snake = number_field(json, object, "expires_in")?;
        Ok(Reply {
            token: token.or(access_token),
            expires_in: expires_in.or(expires_in_snake),
            expires_on: number_field(json, object, "expiresOn")?,
            region: string_field(json, object, "region")?,
            endpoint: string_field(json, object, "endpoint")?,
        })
    }
}

/// Parses and validates a broker answer.
///
/// `content_type` picks the format (JSON, or a text body that is the token itself, as an
/// issueToken passthrough answers); `now_wall_ms` converts an absolute `expiresOn` or JWT `exp`
/// into a lifetime.
pub fn parse_grant<J: Json>(
    body: &str,
    content_type: Option<&str>,
    json: &J,
    now_wall_ms: f64,
) -> Result<Grant, Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Invalid::BodyTooLarge.into());
    }
    let text = body.trim();
    if text.is_empty() {
        return Err(Invalid::Empty.into());
    }
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if media == "text/html" || text.starts_with('<') {
        return Err(Invalid::Html.into());
    }
    if media.ends_with("json") || text.starts_with('{') || text.starts_with('[') {
        let object = json.parse_object(text).map_err(|e| match e {
            JsonError::Syntax => Invalid::NotJson,
            JsonError::Shape => Invalid::WrongType,
        })?;
        let reply = Reply::read(json, &object)?;
        return grant_from_reply(reply, json, now_wall_ms);
    }
    let token = validate_token(text.to_owned())?;
    let lifetime_ms = lifetime_from_jwt(token.expose(), json, now_wall_ms)?;
    Ok(Grant {
        token,
        lifetime_ms: lifetime_ms.unwrap_or(DEFAULT_LIFETIME_MS),
        region: None,
        endpoint: None,
    })
}

fn grant_from_reply<J: Json>(reply: Reply, json: &J, now_wall_ms: f64) -> Result<Grant, Error> {
    let Reply {
        token,
        expires_in,
        expires_on,
        region,
        endpoint,
    } = reply;
    let secret = token.ok_or(Invalid::MissingToken)?;
    let token = validate_token(secret)?;
    let lifetime_ms = match (expires_in, expires_on) {
        (Some(seconds), _) => checked_lifetime(seconds * 1000.0)?,
        (None, Some(epoch_seconds)) => checked_lifetime(epoch_seconds * 1000.0 - now_wall_ms)?,
        (None, None) => {
            lifetime_from_jwt(token.expose(), json, now_wall_ms)?.unwrap_or(DEFAULT_LIFETIME_MS)
        }
    };
    grant(token, lifetime_ms, region, endpoint)
}

/// Validates a token that another tab of the same origin shared (`shareAcrossTabs`), exactly as
/// strictly as a broker answer: the token's shape, the region, the endpoint, and the lifetime,
/// which is `expires_at_wall_ms - now_wall_ms` (both epoch ms on this machine's clock) and must
/// lie within 1 s..24 h like a broker's `expiresIn`.
pub fn grant_from_parts(
    token: String,
    expires_at_wall_ms: f64,
    region: Option<String>,
    endpoint: Option<String>,
    now_wall_ms: f64,
) -> Result<Grant, Error> {
    let token = validate_token(token)?;
    let lifetime_ms = checked_lifetime(expires_at_wall_ms - now_wall_ms)?;
    grant(token, lifetime_ms, region, endpoint)
}

/// The last step of both validations: check the region and endpoint, then assemble the grant.
fn grant(
    token: Token,
    lifetime_ms: f64,
    region: Option<String>,
    endpoint: Option<String>,
) -> Result<Grant, Error> {
    if let Some(region) = &region {
        validate_region(region)?;
    }
    if let Some(endpoint) = &endpoint {
        validate_endpoint(endpoint)?;
    }
    Ok(Grant {
        token,
        lifetime_ms,
        region,
        endpoint,
    })
}

fn checked_lifetime(ms: f64) -> Result<f64, Invalid> {
    if ms.is_finite() && (MIN_LIFETIME_MS..=MAX_LIFETIME_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(Invalid::Lifetime)
    }
}

/// Checks a token's shape: non-empty, at most [`MAX_TOKEN_BYTES`], printable ASCII without
/// spaces, quotes or backslashes (a token is pasted into a header and a URL by the SDK).
fn validate_token(secret: String) -> Result<Token, Invalid> {
    // Wrap first so that a rejected value is still wiped on drop.
    let token = Token::new(secret);
    if token.is_empty() {
        return Err(Invalid::MissingToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid::TokenTooLong);
    }
    if !token.expose().bytes().all(is_token_byte) {
        return Err(Invalid::TokenCharacters);
    }
    Ok(token)
}

/// A byte a token may contain: printable ASCII except space, quotes and backslash.
fn is_token_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\')
}

/// Whether `s` passes this client's token rule (non-empty, at most [`MAX_TOKEN_BYTES`], printable
/// ASCII without spaces, quotes or backslashes). For servers, such as the reference broker, that
/// must never hand out what the client would refuse.
///
/// ```
/// use speech_token_client::engine::token::is_valid_token_text;
/// assert!(is_valid_token_text("aad#/subscriptions/x#eyJ.a.b"));
/// assert!(!is_valid_token_text("it's"));
/// ```
pub fn is_valid_token_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOKEN_BYTES && s.bytes().all(is_token_byte)
}

/// Whether `region` passes this client's region rule (lowercase ASCII letters and digits, at
/// most [`MAX_REGION_BYTES`]).
///
/// ```
/// use speech_token_client::engine::token::is_valid_region;
/// assert!(is_valid_region("westeurope"));
/// assert!(!is_valid_region("West Europe"));
/// ```
pub fn is_valid_region(region: &str) -> bool {
    validate_region(region).is_ok()
}

/// Whether `endpoint` passes this client's endpoint rule (`wss://`/`https://`, or `ws://`/`http://`
/// on a loopback host; no credentials).
///
/// ```
/// use speech_token_client::engine::token::is_valid_endpoint;
/// assert!(is_valid_endpoint("https://x.cognitiveservices.azure.com"));
/// assert!(!is_valid_endpoint("http://example.com"));
/// ```
pub fn is_valid_endpoint(endpoint: &str) -> bool {
    validate_endpoint(endpoint).is_ok()
}

/// A region is an Azure region name: lowercase ASCII letters and digits.
fn validate_region(region: &str) -> Result<(), Invalid> {
    let ok = !region.is_empty()
        && region.len() <= MAX_REGION_BYTES
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some(()).ok_or(Invalid::Region)
}

/// An endpoint must be `wss://` or `https://`; `ws://`/`http://` only on a loopback host (the
/// local fake service). No credentials, spaces or control characters.
fn validate_endpoint(endpoint: &str) -> Result<(), Invalid> {
    if endpoint.len() > MAX_ENDPOINT_BYTES || !endpoint.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(Invalid::Endpoint);
    }
    let (scheme, rest) = endpoint.split_once("://").ok_or(Invalid::Endpoint)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(Invalid::Endpoint);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "wss" | "https" => Ok(()),
        "ws" | "http" if is_loopback_host(host_of(authority)) => Ok(()),
        _ => Err(Invalid::Endpoint),
    }
}

/// The host part of an authority (`host:port` or `[v6]:port`), without the port.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether `host` names this machine: `localhost`, `127.0.0.0/8` or `::1`. Plain HTTP is allowed
/// only there (nothing on the network can read loopback traffic).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host == "::1" {
        return true;
    }
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
        && octets
            .iter()
            .all(|o| o.parse::<u16>().is_ok_and(|n| n <= 255))
}

/// Lifetime from a JWT's `exp - iat` (or `exp - now` without `iat`), read without verifying
/// anything: only to schedule a refresh. `Ok(None)` when the token is not a JWT or has no `exp`.
fn lifetime_from_jwt<J: Json>(
    token: &str,
    json: &J,
    now_wall_ms: f64,
) -> Result<Option<f64>, Invalid> {
    // `aad#<resourceId>#<jwt>`: the JWT is the last part.
    let jwt = token.rsplit('#').next().unwrap_or(token);
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let Some(bytes) = base64url_decode(payload) else {
        return Ok(None);
    };
    let Ok(text) = core::str::from_utf8(&bytes) else {
        return Ok(None);
    };
    let Ok(claims) = json.parse_object(text) else {
        return Ok(None);
    };
    // Only to schedule a refresh, never to trust anything: odd claims mean "no lifetime".
    let number = |key| match json.field(&claims, key) {
        Field::Num(n) => Some(n),
        _ => None,
    };
    match (number("exp"), number("iat")) {
        (Some(exp), Some(iat)) => checked_lifetime((exp - iat) * 1000.0).map(Some),
        (Some(exp), None) => checked_lifetime(exp * 1000.0 - now_wall_ms).map(Some),
        _ => Ok(None),
    }
}

/// Decodes unpadded (or padded) base64url, as JWT segments use. Hand-written rather than the
/// `base64` crate: it is 20 lines and the crate would add several KB to every user's bundle.
pub fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in input.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // A single leftover character (6 bits) cannot encode a byte.
    (bits < 6).then_some(out)
}

/// Where tokens may be fetched from: `https:`, a same-origin relative URL, or `http:` on a
/// loopback host. Anything else would send the request (and receive the token) in clear text
/// across a network, or to another site.
///
/// `relative` says whether the user wrote a relative URL; `same_origin` whether it resolved to
/// the page's own origin (a protocol-relative `//other.host/` is relative but not same-origin).
pub fn check_broker_url(
    relative: bool,
    same_origin: bool,
    scheme: &str,
    host: &str,
    has_userinfo: bool,
) -> Result<(), Error> {
    if has_userinfo {
        return Err(Error::Config(
            "brokerUrl must not carry a user name or password",
        ));
    }
    let allowed = match scheme {
        "https:" => true,
        "http:" => (relative && same_origin) || is_loopback_host(host),
        _ => false,
    };
    if relative && !same_origin {
        return Err(Error::Config(
            "a relative brokerUrl must stay on the page's origin",
        ));
    }
    allowed.then_some(()).ok_or(Error::Config(
        "brokerUrl must be https, a same-origin relative URL, or http on a loopback host",
    ))
}
