//! The token itself and the strict parsing of a broker's answer into a [`Grant`].
//!
//! A [`Token`] never prints its value (`Debug`/`Display` are redacted) and wipes its bytes when
//! dropped. A [`Grant`] is a validated broker answer: a token, its lifetime, and optionally the
//! region or endpoint the Speech SDK should use. The answer's fields are read with serde
//! ([`read_fields`], one visitor for the answer, a JWT's claims and the options); decoding the
//! JSON text is delegated to a [`Json`] implementation, so that the wasm build uses the
//! browser's own `JSON.parse` and serde-wasm-bindgen (no JSON parser in the bundle) while
//! native tests use serde_json. Every field is read leniently ([`Field`], [`Secret`]): a wrong
//! type is this module's `WrongType`, never a serde error message (serde's error path formats
//! its argument, floats included).

use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use zeroize::Zeroize;

use crate::engine::Ms;
use crate::error::{Error, Invalid};

/// Largest accepted response body. Token answers are a few KB; anything bigger is not one.
/// Source: docs/ARCHITECTURE.md, "Validate strictly ... body ≤ 64 KiB".
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted token. Entra access tokens with many claims reach ~4 KB; `aad#` adds an ARM
/// resource id. Source: docs/ARCHITECTURE.md, "token ... ≤ 16 KiB".
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Shortest lifetime a broker may declare. Source: docs/ARCHITECTURE.md, "lifetime 1 s..24 h".
pub const MIN_LIFETIME_MS: f64 = 1_000.0;
/// Longest lifetime a broker may declare. Source: docs/ARCHITECTURE.md, "lifetime 1 s..24 h".
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
    /// Wraps a secret string (validated or not) so that it is redacted and wiped on drop.
    pub fn new(secret: String) -> Token {
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

impl From<String> for Token {
    fn from(secret: String) -> Token {
        Token::new(secret)
    }
}

impl From<&str> for Token {
    fn from(secret: &str) -> Token {
        Token::new(secret.to_owned())
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

/// The value of one field of a JSON object, as far as token parsing cares. Deserializes from
/// any value without failing: the caller decides what a wrong type means.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field {
    /// Missing or `null`.
    #[default]
    Absent,
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// Anything else (array, object).
    Other,
}

/// A field that may hold a credential: its string is wrapped in a [`Token`] before anything
/// else is looked at, so its bytes are wiped when dropped on every path (an unused
/// `access_token`, a later error).
#[derive(Debug, Default)]
pub enum Secret {
    /// Missing or `null`.
    #[default]
    Absent,
    /// A string, wrapped at once.
    Token(Token),
    /// Not a string.
    WrongType,
}

impl From<Field> for Secret {
    fn from(field: Field) -> Secret {
        match field {
            Field::Str(s) => Secret::Token(Token::new(s)),
            Field::Absent => Secret::Absent,
            _ => Secret::WrongType,
        }
    }
}

/// Whether a nested array or object (a field's value is then "other", whatever it holds) must
/// still be read to its end. A text parser needs it: serde_json (native) checks the closing
/// bracket after the visitor returns. serde-wasm-bindgen (the wasm build) hands over a value
/// `JSON.parse` already built and checks nothing after, so reading on would only cost code:
/// 0.4 KB of the gzipped package (bench/size-steps.md, step 15).
const DRAIN_NESTED: bool = cfg!(not(target_arch = "wasm32"));

/// Consumes the rest of a sequence or map.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Visits any value as a [`Field`]: the one visitor of the answer, the JWT claims and the
/// options (one copy of the deserializer's code for all of them).
struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field, E> {
        Ok(Field::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Ok(Field::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Ok(Field::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field, E> {
        Ok(Field::Num(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Field, E> {
        Ok(Field::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field, A::Error> {
        if DRAIN_NESTED {
            drain_seq(seq)?;
        }
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
        if DRAIN_NESTED {
            drain_map(map)?;
        }
        Ok(Field::Other)
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

/// Reads the fields `names` of one object into `out` (in the same order), each as a [`Field`];
/// other keys are skipped, and a repeated key's last value counts (as with `JSON.parse`). The
/// caller checks that the value is an object: serde-wasm-bindgen reads an array's named
/// properties like an object's. One visitor for every object the module reads (the broker
/// answer, the JWT claims, the options): serde_derive makes a visitor, a field-name visitor and
/// a key reader per struct, ~2 KB of wasm each (bench/size-steps.md, step 42). On an error every string read
/// so far is wiped (an answer's token may be one of them).
pub fn read_fields<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [&'static str],
    out: &mut [Field],
) -> Result<(), D::Error> {
    let read = d.deserialize_struct(
        "",
        names,
        Fields {
            names,
            out: &mut *out,
        },
    );
    if read.is_err() {
        for field in out.iter_mut() {
            if let Field::Str(s) = field {
                s.zeroize();
            }
        }
    }
    read
}

/// [`read_fields`]' visitor: an object's entries, each put in its slot.
struct Fields<'a> {
    names: &'static [&'static str],
    out: &'a mut [Field],
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(Name(self.names))? {
            match slot.and_then(|at| self.out.get_mut(at)) {
                Some(slot) => {
                    // A repeated key (a text parser reads every one): the earlier string wiped.
                    if let Field::Str(s) = slot {
                        s.zeroize();
                    }
                    *slot = map.next_value()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key, read as its position among the names looked for (`None`: another key).
struct Name(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

/// Decodes a JSON object. The wasm shell implements it with the browser's `TextDecoder` and
/// `JSON.parse`, and serde-wasm-bindgen; native code with serde_json. Both read the fields with
/// [`read_fields`].
pub trait Json {
    /// Parses `text`, which must be UTF-8 (else [`JsonError::Syntax`]) and a JSON object (not an
    /// array or a scalar), and reads its fields `names` into `out` ([`read_fields`]). Bytes, not
    /// a `&str`: the decoder checks the encoding, so the wasm bundle needs no UTF-8 validator of
    /// its own.
    fn parse_object(
        &self,
        text: &[u8],
        names: &'static [&'static str],
        out: &mut [Field],
    ) -> Result<(), JsonError>;
}

/// The parts of a URL the endpoint rules look at, as a WHATWG URL parser gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// The scheme, lowercase, without the colon (`wss`).
    pub scheme: String,
    /// The host, lowercase (IDN as punycode), IPv6 without brackets.
    pub host: String,
    /// Whether the URL carries a user name or password.
    pub has_userinfo: bool,
}

/// A WHATWG URL parser: the browser's own `URL` in the wasm shell, the `url` crate natively.
/// Endpoints must be judged exactly as the browser will use them (a backslash is a slash, IDN
/// hosts are punycode, `localhost.` is `localhost`), which hand-written splitting gets wrong.
pub trait UrlParser {
    /// The parts of `url`, or `None` if it is not an absolute URL.
    fn url_parts(&self, url: &str) -> Option<UrlParts>;
}

/// An optional string field; any other type is an error.
fn string_field(field: Field) -> Result<Option<String>, Invalid> {
    match field {
        Field::Absent => Ok(None),
        Field::Str(s) => Ok(Some(s)),
        _ => Err(Invalid::WrongType),
    }
}

/// An optional credential field; any other type is an error.
fn secret_field(field: Secret) -> Result<Option<Token>, Invalid> {
    match field {
        Secret::Absent => Ok(None),
        Secret::Token(token) => Ok(Some(token)),
        Secret::WrongType => Err(Invalid::WrongType),
    }
}

/// Longest digit string read as a number (epoch seconds have 10 digits until the year 2286).
const MAX_NUMERIC_STRING: usize = 12;

/// An optional number field; any other type is an error.
fn number_field(field: Field) -> Result<Option<f64>, Invalid> {
    match field {
        Field::Absent => Ok(None),
        Field::Num(n) => Ok(Some(n)),
        _ => Err(Invalid::WrongType),
    }
}

/// An OAuth-style number field (`expires_in`, `expires_on`): a number, or a string of plain
/// digits, as Azure's managed-identity endpoints answer (`"3599"`), so that a broker passing
/// such an answer through is understood. The contract's own camelCase fields stay numbers.
fn oauth_number_field(field: Field) -> Result<Option<f64>, Invalid> {
    match field {
        Field::Str(s)
            if !s.is_empty()
                && s.len() <= MAX_NUMERIC_STRING
                && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(Some(
                s.bytes().fold(0.0, |n, b| n * 10.0 + f64::from(b - b'0')),
            ))
        }
        other => number_field(other),
    }
}

/// The fields a broker may answer ([`Reply::read`] takes them in this order). Unknown fields
/// are ignored (forward compatible); known fields with the wrong type are an error.
const ANSWER_FIELDS: &[&str; 8] = &[
    "token",
    "access_token",
    "expiresIn",
    "expires_in",
    "expiresOn",
    "expires_on",
    "region",
    "endpoint",
];

/// A JWT's claims, as far as scheduling cares: `exp`, `iat`.
const CLAIM_FIELDS: &[&str; 2] = &["exp", "iat"];

/// A broker answer with its types checked.
struct Reply {
    token: Option<Token>,
    expires_in: Option<f64>,
    expires_on: Option<f64>,
    region: Option<String>,
    endpoint: Option<String>,
}

impl Reply {
    /// Checks the fields of [`ANSWER_FIELDS`], read in that order.
    fn read(answer: [Field; 8]) -> Result<Reply, Invalid> {
        let [token, access_token, expires_in, expires_in_snake, expires_on, expires_on_snake, region, endpoint] =
            answer;
        // Both credentials wrapped before any check can return.
        let (token, access_token) = (Secret::from(token), Secret::from(access_token));
        let token = secret_field(token)?;
        let access_token = secret_field(access_token)?;
        let expires_in = number_field(expires_in)?;
        let expires_in_snake = oauth_number_field(expires_in_snake)?;
        let expires_on = number_field(expires_on)?;
        // Other forms of `expires_on` (App Service's old "09/14/2017 00:00:00 PM +00:00") are
        // ignored, as the field was before it was read: the stated `expires_in` decides.
        let expires_on_snake = oauth_number_field(expires_on_snake).unwrap_or(None);
        Ok(Reply {
            token: token.or(access_token),
            expires_in: expires_in.or(expires_in_snake),
            expires_on: expires_on.or(expires_on_snake),
            region: string_field(region)?,
            endpoint: string_field(endpoint)?,
        })
    }
}

/// The clocks an answer's absolute times (`expiresOn`, a JWT's `exp`) are read against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerClock {
    /// This machine's wall clock when the answer arrived (epoch ms).
    pub local_ms: f64,
    /// The broker's clock, from the answer's `Date` header (epoch ms), when the browser lets us
    /// read it (same origin, or `Access-Control-Expose-Headers: Date`).
    pub server_ms: Option<f64>,
}

impl AnswerClock {
    /// Only the local clock is known.
    pub fn local(local_ms: f64) -> AnswerClock {
        AnswerClock {
            local_ms,
            server_ms: None,
        }
    }

    /// "Now" for an absolute expiry: the broker's clock when known (immune to a wrong browser
    /// clock), else ours. The `Date` header has whole seconds (truncated): the server's "now" can
    /// be up to [`DATE_RESOLUTION_MS`] later than it says, so count that much more.
    fn now(&self) -> f64 {
        match self.server_ms {
            Some(server) if server.is_finite() => server + DATE_RESOLUTION_MS,
            _ => self.local_ms,
        }
    }
}

/// Resolution of the HTTP `Date` header (RFC 9110 §5.6.7: whole seconds).
pub const DATE_RESOLUTION_MS: f64 = 1_000.0;

/// Parses and validates a broker answer.
///
/// `content_type` picks the format (JSON, or a text body that is the token itself, as an
/// issueToken passthrough answers); `now_wall_ms` converts an absolute `expiresOn` or JWT `exp`
/// into a lifetime (see [`parse_grant_at`] to read them against the broker's clock).
pub fn parse_grant<J: Json + UrlParser>(
    body: &(impl AsRef<[u8]> + ?Sized),
    content_type: Option<&str>,
    json: &J,
    now_wall_ms: f64,
) -> Result<Grant, Error> {
    parse_grant_at(body, content_type, json, AnswerClock::local(now_wall_ms))
}

/// [`parse_grant`], with the broker's clock when known.
///
/// The lifetime rule (docs/ARCHITECTURE.md, "Token age"): `expiresIn` as the broker says; else
/// `expiresOn − now`; else, for a JWT, `min(exp − now, exp − iat)`, where "now" is the broker's
/// `Date` when readable, so that a browser clock that is minutes off neither rejects a fresh
/// token nor serves an old one past its `exp`. An `exp` already passed is `ExpiredOnArrival`.
pub fn parse_grant_at<J: Json + UrlParser>(
    body: &(impl AsRef<[u8]> + ?Sized),
    content_type: Option<&str>,
    json: &J,
    clock: AnswerClock,
) -> Result<Grant, Error> {
    let body = body.as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(Invalid::BodyTooLarge.into());
    }
    // A UTF-8 byte order mark (some servers' text and JSON bodies start with one) is not content.
    // ASCII whitespace only (`trim_ascii`, a byte loop): JSON's whitespace is ASCII, and `trim()`
    // would link a Unicode whitespace table into every bundle.
    let text = body
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(body)
        .trim_ascii();
    if text.is_empty() {
        return Err(Invalid::Empty.into());
    }
    let media = content_type
        .map(|c| {
            c[..c.bytes().position(|b| b == b';').unwrap_or(c.len())]
                .trim_ascii()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let first = text[0];
    if media == "text/html" || first == b'<' {
        return Err(Invalid::Html.into());
    }
    if media.ends_with("json") || first == b'{' || first == b'[' {
        let mut answer: [Field; 8] = Default::default();
        json.parse_object(text, ANSWER_FIELDS, &mut answer)
            .map_err(|e| match e {
                JsonError::Syntax => Invalid::NotJson,
                JsonError::Shape => Invalid::WrongType,
            })?;
        let reply = Reply::read(answer)?;
        return grant_from_reply(reply, json, clock);
    }
    // A text body is the token itself (an issueToken passthrough): it must look like one, so
    // that "OK", "null" or "Unauthorized" with status 200 is not taken for a token.
    let token = validate_token(Token::new(ascii_text(text)))?;
    if !looks_like_token(token.expose()) {
        return Err(Invalid::NotAToken.into());
    }
    let lifetime_ms = lifetime_from_jwt(token.expose(), json, clock)?;
    Ok(Grant {
        token,
        lifetime_ms: lifetime_ms.unwrap_or(DEFAULT_LIFETIME_MS),
        region: None,
        endpoint: None,
    })
}

/// A text body as a `String` for the token rules, with every byte outside ASCII (none is a
/// token byte) as DEL, which they refuse as well: the same verdicts as on the decoded text,
/// `TokenTooLong` included (one byte each), without a UTF-8 decoder. Allocated once at its final
/// size, so no reallocation leaves an unwiped copy of a token behind.
fn ascii_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    text.extend(
        bytes
            .iter()
            .map(|&b| if b.is_ascii() { char::from(b) } else { '\x7f' }),
    );
    text
}

fn grant_from_reply<J: Json + UrlParser>(
    reply: Reply,
    json: &J,
    clock: AnswerClock,
) -> Result<Grant, Error> {
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
        (Some(seconds), _) => {
            capped_by_jwt(checked_lifetime(seconds * 1000.0)?, &token, json, clock)?
        }
        (None, Some(epoch_seconds)) => capped_by_jwt(
            checked_lifetime(epoch_seconds * 1000.0 - clock.now())?,
            &token,
            json,
            clock,
        )?,
        (None, None) => {
            lifetime_from_jwt(token.expose(), json, clock)?.unwrap_or(DEFAULT_LIFETIME_MS)
        }
    };
    grant(token, lifetime_ms, region, endpoint, json)
}

/// A lifetime the broker stated (`expiresIn`, `expiresOn`), capped by the token's own `exp`
/// where that can be judged without trusting this machine's clock: never past `exp − iat` (the
/// issuer's whole lifetime), and, when the broker's `Date` is known, never past
/// `exp − broker now`. So a broker repeating a stale `expiresIn` for a cached JWT cannot make
/// the client serve it past its `exp`; without the broker's clock, this machine's clock is not
/// used to shorten a stated lifetime (a fast clock would reject good tokens).
fn capped_by_jwt<J: Json>(
    stated_ms: f64,
    token: &Token,
    json: &J,
    clock: AnswerClock,
) -> Result<f64, Invalid> {
    let Some((exp, iat)) = jwt_times(token.expose(), json) else {
        return Ok(stated_ms);
    };
    let mut lifetime_ms = stated_ms;
    // A malformed issuer lifetime caps nothing (as in `lifetime_from_jwt`, it is not "expired").
    if let Some(issued) = iat.and_then(|iat| checked_lifetime((exp - iat) * 1000.0).ok()) {
        lifetime_ms = lifetime_ms.min_ms(issued);
    }
    // The `Date` as sent (whole seconds, so up to a second early): this cap is for a stale
    // `expiresIn` (minutes off), and must not cut short-lived tokens by the header's resolution.
    if let Some(server) = clock.server_ms.filter(|ms| ms.is_finite()) {
        let left = exp * 1000.0 - server;
        if left < MIN_LIFETIME_MS {
            return Err(Invalid::ExpiredOnArrival);
        }
        lifetime_ms = lifetime_ms.min_ms(left);
    }
    Ok(lifetime_ms)
}

/// Validates a token another tab of the same origin shared (`shareAcrossTabs`): exactly as
/// strict about the token's shape as a broker answer. A peer hands over only the token and how
/// long it may still be handed out (`usable_for_ms`, judged by the sender's own two clocks):
/// never a region or endpoint (where the audio goes comes only from this tab's own broker), and
/// never an absolute time (the receiver anchors it on its own clocks). The lifetime must lie
/// within 1 s..24 h; the engine caps it further (`Machine::adopt`).
pub fn grant_from_peer(token: impl Into<Token>, usable_for_ms: f64) -> Result<Grant, Error> {
    let token = validate_token(token.into())?;
    let lifetime_ms = checked_lifetime(usable_for_ms)?;
    Ok(Grant {
        token,
        lifetime_ms,
        region: None,
        endpoint: None,
    })
}

/// The last step of a broker answer's validation: check the region and endpoint, then
/// assemble the grant.
fn grant(
    token: Token,
    lifetime_ms: f64,
    region: Option<String>,
    endpoint: Option<String>,
    urls: &impl UrlParser,
) -> Result<Grant, Error> {
    if let Some(region) = &region {
        validate_region(region)?;
    }
    if let Some(endpoint) = &endpoint {
        validate_endpoint(endpoint, urls)?;
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
/// Takes a [`Token`] so that a rejected value is still wiped on drop.
fn validate_token(token: Token) -> Result<Token, Invalid> {
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
/// on a loopback host; no credentials), judged by `urls` (a WHATWG URL parser).
///
/// ```ignore
/// use speech_token_client::engine::token::{is_valid_endpoint, WhatwgUrl};
/// assert!(is_valid_endpoint("https://x.cognitiveservices.azure.com", &WhatwgUrl));
/// assert!(!is_valid_endpoint("http://example.com", &WhatwgUrl));
/// ```
pub fn is_valid_endpoint(endpoint: &str, urls: &impl UrlParser) -> bool {
    validate_endpoint(endpoint, urls).is_ok()
}

/// The `url` crate (a WHATWG URL parser, as browsers implement it) for native users of the
/// engine's rules: the reference broker and the test bench. Feature `url`; never in the wasm
/// build, where the browser's own `URL` is used.
#[cfg(feature = "url")]
#[derive(Debug, Clone, Copy, Default)]
pub struct WhatwgUrl;

#[cfg(feature = "url")]
impl UrlParser for WhatwgUrl {
    fn url_parts(&self, url: &str) -> Option<UrlParts> {
        let parsed = url::Url::parse(url).ok()?;
        let host = match parsed.host()? {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        Some(UrlParts {
            scheme: parsed.scheme().to_ascii_lowercase(),
            host,
            has_userinfo: !parsed.username().is_empty() || parsed.password().is_some(),
        })
    }
}

/// A region is an Azure region name: lowercase ASCII letters and digits.
pub fn validate_region(region: &str) -> Result<(), Invalid> {
    let ok = !region.is_empty()
        && region.len() <= MAX_REGION_BYTES
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some(()).ok_or(Invalid::Region)
}

/// An endpoint must be `wss://` or `https://`; `ws://`/`http://` only on a loopback host (the
/// local fake service). No credentials, spaces or control characters. Judged by a WHATWG URL
/// parser: the host is what the browser will connect to.
pub fn validate_endpoint(endpoint: &str, urls: &impl UrlParser) -> Result<(), Invalid> {
    if endpoint.len() > MAX_ENDPOINT_BYTES || !endpoint.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(Invalid::Endpoint);
    }
    let parts = urls.url_parts(endpoint).ok_or(Invalid::Endpoint)?;
    if parts.has_userinfo || parts.host.is_empty() {
        return Err(Invalid::Endpoint);
    }
    match parts.scheme.as_str() {
        "wss" | "https" => Ok(()),
        "ws" | "http" if is_loopback_host(&parts.host) => Ok(()),
        _ => Err(Invalid::Endpoint),
    }
}

/// Whether a text answer has the shape of a token: a JWT (three base64url segments, the first
/// two non-empty) or `aad#<resourceId>#<JWT>`, the Entra form the Speech SDK accepts.
pub fn looks_like_token(text: &str) -> bool {
    let jwt = match text.strip_prefix("aad#") {
        Some(rest) => match rest.bytes().rposition(|b| b == b'#') {
            Some(at) if at > 0 => &rest[at + 1..],
            _ => return false,
        },
        None => text,
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    matches!(
        three_parts(jwt),
        Some((h, p, sig))
            if !h.is_empty() && !p.is_empty() && base64url(h) && base64url(p) && base64url(sig)
    )
}

/// `text` split at its dots into exactly three parts (a JWT's header, payload and signature).
fn three_parts(text: &str) -> Option<(&str, &str, &str)> {
    let dot = |from: usize| {
        text.as_bytes()[from..]
            .iter()
            .position(|&b| b == b'.')
            .map(|at| from + at)
    };
    let first = dot(0)?;
    let second = dot(first + 1)?;
    if dot(second + 1).is_some() {
        return None;
    }
    Some((
        &text[..first],
        &text[first + 1..second],
        &text[second + 1..],
    ))
}

/// `text` without any run of `byte` at its end. A byte loop, not `trim_end_matches(char)` (a
/// char searcher: ~0.3 KB of wasm); `byte` is ASCII, so the cut is on a char boundary.
fn without_trailing(text: &str, byte: u8) -> &str {
    &text[..text.bytes().rposition(|b| b != byte).map_or(0, |i| i + 1)]
}

/// Whether `host` names this machine: `localhost`, `127.0.0.0/8` or `::1`. Plain HTTP is allowed
/// only there (nothing on the network can read loopback traffic).
pub fn is_loopback_host(host: &str) -> bool {
    let host = without_trailing(host, b'.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host == "::1" {
        return true;
    }
    // 127.a.b.c, each octet 1–3 digits and at most 255.
    let Some(rest) = host.strip_prefix("127.") else {
        return false;
    };
    let mut octets = 0;
    let mut value = 0u16;
    let mut digits = 0;
    for b in rest.bytes().chain(core::iter::once(b'.')) {
        match b {
            b'0'..=b'9' if digits < 3 => {
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && value <= 255 => {
                octets += 1;
                value = 0;
                digits = 0;
            }
            _ => return false,
        }
    }
    octets == 3
}

/// A JWT's `exp` and `iat` (epoch seconds), read without verifying anything: only to schedule a
/// refresh. `None` when the token is not a JWT or has no numeric `exp`.
fn jwt_times<J: Json>(token: &str, json: &J) -> Option<(f64, Option<f64>)> {
    // `aad#<resourceId>#<jwt>`: the JWT is the last part.
    let jwt = &token[token
        .bytes()
        .rposition(|b| b == b'#')
        .map_or(0, |at| at + 1)..];
    let (_header, payload, _signature) = three_parts(jwt)?;
    let bytes = base64url_decode(payload)?;
    let mut claims: [Field; 2] = Default::default();
    json.parse_object(&bytes, CLAIM_FIELDS, &mut claims).ok()?;
    let [exp, iat] = claims;
    // Only to schedule a refresh, never to trust anything: odd claims mean "no lifetime".
    let number = |field| match field {
        Field::Num(n) if n.is_finite() => Some(n),
        _ => None,
    };
    Some((number(exp)?, number(iat)))
}

/// Lifetime of a JWT: `min(exp − now, exp − iat)`, with "now" from [`AnswerClock`] (the
/// broker's `Date` when known). `exp − now` never serves a cached token past its own `exp`;
/// `exp − iat` never lets a clock that is behind the issuer's lengthen a token. `Ok(None)` when
/// the token is not a JWT or has no `exp`; `ExpiredOnArrival` when `exp` has passed.
fn lifetime_from_jwt<J: Json>(
    token: &str,
    json: &J,
    clock: AnswerClock,
) -> Result<Option<f64>, Invalid> {
    let Some((exp, iat)) = jwt_times(token, json) else {
        return Ok(None);
    };
    // The issuer's own lifetime must be sane (a malformed token is not "expired").
    let issued = match iat {
        Some(iat) => Some(checked_lifetime((exp - iat) * 1000.0)?),
        None => None,
    };
    let left = exp * 1000.0 - clock.now();
    let remaining = issued.map_or(left, |issued| left.min_ms(issued));
    if remaining < MIN_LIFETIME_MS {
        return Err(Invalid::ExpiredOnArrival);
    }
    checked_lifetime(remaining).map(Some)
}

/// Decodes unpadded (or padded) base64url, as JWT segments use. Hand-written rather than the
/// `base64` crate: it is 20 lines and the crate would add several KB to every user's bundle.
pub fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = without_trailing(input, b'=');
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
