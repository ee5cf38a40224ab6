//! One request to the token broker, with the safety settings that keep the token out of every
//! cache and away from redirects.

use gloo_net::http::Request;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, AbortSignal, Headers, ReadableStreamDefaultReader};
use zeroize::Zeroizing;

use crate::engine::token::{
    parse_grant_at, read_fields, AnswerClock, Field, Json, JsonError, UrlParser, UrlParts,
    MAX_BODY_BYTES,
};
use crate::engine::Grant;
use crate::error::{parse_digits, retry_after_from_date, Error, Invalid};
use crate::web::clock;
use crate::web::js::{dictionary, get, own_entries, text, until_aborted};
use crate::web::timer::Timeout;

/// Where the extra request headers come from.
pub enum HeaderSource {
    /// No extra headers.
    None,
    /// The same headers on every request: the `Headers` built and checked at construction by
    /// [`request_headers`] (copied per request; a `Headers` can be read any number of times).
    Static(JsValue),
    /// A function returning headers (or a promise of them), called before every request: for
    /// the app's own short-lived session bearer.
    Provider(js_sys::Function),
}

/// How to reach the broker. Validated once, at construction.
pub struct BrokerConfig {
    /// Absolute URL of the token endpoint.
    pub url: String,
    /// GET or POST (POST sends an empty body).
    pub post: bool,
    /// Cookie policy for the request: `"same-origin"`, `"include"` or `"omit"`.
    pub credentials: &'static str,
    /// Extra headers.
    pub headers: HeaderSource,
    /// Abort the request after this long.
    pub timeout_ms: f64,
}

/// JSON decoding with the browser's own `TextDecoder` and `JSON.parse`, the object read into
/// the engine's serde types by serde-wasm-bindgen: no UTF-8 validator and no JSON parser in the
/// wasm bundle.
pub struct BrowserJson;

impl Json for BrowserJson {
    fn parse_object(
        &self,
        text: &[u8],
        names: &'static [&'static str],
        out: &mut [Field],
    ) -> Result<(), JsonError> {
        // `fatal`: bytes that are not UTF-8 are refused, never replaced by U+FFFD. `ignoreBOM`:
        // a byte order mark is left as text (the engine strips one), as serde_json does natively.
        let options = dictionary(&[("fatal", JsValue::TRUE), ("ignoreBOM", JsValue::TRUE)]);
        let decoder = Utf8Decoder::new("utf-8", &options).map_err(|_| JsonError::Syntax)?;
        let text = decoder.decode(text).map_err(|_| JsonError::Syntax)?;
        let value = json_parse(&text).map_err(|_| JsonError::Syntax)?;
        if !value.is_object() || js_sys::Array::is_array(&value) {
            return Err(JsonError::Shape);
        }
        // serde-wasm-bindgen reads fields as `value[name]`: without a prototype, nothing that
        // page code put on `Object.prototype` (an `endpoint`, an `expiresIn`) reads as the
        // broker's. The object is this call's own, fresh from `JSON.parse`.
        js_sys::Object::set_prototype_of(
            value.unchecked_ref::<js_sys::Object>(),
            JsValue::NULL.unchecked_ref::<js_sys::Object>(),
        );
        // A field accepts any value: an error here is not a type mismatch.
        read_fields(serde_wasm_bindgen::Deserializer::from(value), names, out)
            .map_err(|_| JsonError::Shape)
    }
}

impl UrlParser for BrowserJson {
    /// The browser's own WHATWG `URL`: endpoints are judged exactly as the SDK will use them.
    fn url_parts(&self, url: &str) -> Option<UrlParts> {
        let parsed = web_sys::Url::new(url).ok()?;
        let scheme = text(&parsed, "protocol");
        let host = text(&parsed, "hostname");
        Some(UrlParts {
            scheme: scheme
                .strip_suffix(':')
                .unwrap_or(&scheme)
                .to_ascii_lowercase(),
            host: unbracket(&host).to_ascii_lowercase(),
            has_userinfo: !text(&parsed, "username").is_empty()
                || !text(&parsed, "password").is_empty(),
        })
    }
}

/// An IPv6 host without the brackets `URL.hostname` gives it (`[::1]` → `::1`).
pub(crate) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Why the app's headers cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHeaders {
    /// A record with a value that is not a string (a number is a mistake, not a header).
    NotAString,
    /// Not a record, a `Headers` or name/value pairs, or a name or value the browser refuses.
    Refused,
}

/// The request's headers from the app's `HeadersInit`: a record of string values, a `Headers`
/// object or name/value pairs (`null`/`undefined`: none), checked by the browser's own
/// `new Headers(init)`; then `Accept`, unless the app set one. The values stay JS strings: the
/// app's session bearer never enters wasm memory.
pub(crate) fn request_headers(init: &JsValue) -> Result<Headers, BadHeaders> {
    let headers = if init.is_undefined() || init.is_null() {
        Headers::new().map_err(|_| BadHeaders::Refused)?
    } else {
        if !init.is_object() {
            return Err(BadHeaders::Refused);
        }
        let iterable = js_sys::Reflect::has(init, &js_sys::Symbol::iterator()).unwrap_or(false);
        if !iterable {
            // A getter that throws is a header the app cannot give: refused, never thrown
            // through the module.
            let all_strings = own_entries(init)
                .map_err(|_| BadHeaders::Refused)?
                .iter()
                .all(|entry| entry.unchecked_into::<js_sys::Array>().get(1).is_string());
            if !all_strings {
                return Err(BadHeaders::NotAString);
            }
        }
        JsHeaders::new(init)
            .map_err(|_| BadHeaders::Refused)?
            .unchecked_into()
    };
    if !headers.has("accept").map_err(|_| BadHeaders::Refused)? {
        headers
            .set("Accept", "application/json, text/plain")
            .map_err(|_| BadHeaders::Refused)?;
    }
    Ok(headers)
}

/// The request headers. A failure of the app's `headers` function (it threw, rejected, or gave
/// something [`request_headers`] refuses) is kind `headers`: retried like a network failure.
/// Static headers were validated at construction.
async fn build_headers(source: &HeaderSource, signal: &AbortSignal) -> Result<Headers, Error> {
    let object = match source {
        HeaderSource::None => JsValue::UNDEFINED,
        HeaderSource::Static(object) => object.clone(),
        HeaderSource::Provider(function) => {
            // Never call the app for a request that is already cancelled (`dispose()`).
            if signal.aborted() {
                return Err(Error::Disposed);
            }
            let value = function
                .call0(&JsValue::UNDEFINED)
                .map_err(|_| Error::Headers)?;
            // The request timeout or `dispose()` ends the wait on the app's promise as well as
            // the fetch itself; the function may also have disposed the client itself.
            if signal.aborted() {
                return Err(Error::Disposed);
            }
            let (raced, stop_listening) = until_aborted(js_sys::Promise::resolve(&value), signal);
            let outcome = JsFuture::from(raced).await;
            stop_listening();
            outcome.map_err(|_| Error::Headers)?
        }
    };
    request_headers(&object).map_err(|_| Error::Headers)
}

#[wasm_bindgen]
extern "C" {
    /// `TextDecoder`: the browser's UTF-8 decoder (web-sys's binding would add its options
    /// dictionary's setters to the glue).
    #[wasm_bindgen(js_name = TextDecoder)]
    type Utf8Decoder;
    /// `new TextDecoder(label, options)`, or the exception of a page's replacement.
    #[wasm_bindgen(constructor, catch, js_class = "TextDecoder")]
    fn new(label: &str, options: &JsValue) -> Result<Utf8Decoder, JsValue>;
    /// `decoder.decode(bytes)`, from a view of wasm memory (no copy); throws, with `fatal`, on
    /// bytes that are not UTF-8.
    #[wasm_bindgen(method, catch, js_class = "TextDecoder")]
    fn decode(this: &Utf8Decoder, bytes: &[u8]) -> Result<JsValue, JsValue>;
    /// `JSON.parse(text)` of a JS string (js-sys's takes a `&str`).
    #[wasm_bindgen(catch, js_namespace = JSON, js_name = parse)]
    fn json_parse(text: &JsValue) -> Result<JsValue, JsValue>;

    /// `Headers`, bound for a constructor that takes any `HeadersInit` as a JS value (web-sys's
    /// typed ones would copy a credential into wasm memory).
    #[wasm_bindgen(js_name = Headers)]
    type JsHeaders;
    /// `new Headers(init)`: throws on a shape, name or value the browser refuses.
    #[wasm_bindgen(constructor, catch, js_class = "Headers")]
    fn new(init: &JsValue) -> Result<JsHeaders, JsValue>;
}

/// Reads the body into one buffer that is wiped when dropped, stopping as soon as it exceeds
/// [`MAX_BODY_BYTES`] (whether or not a `Content-Length` said so). The buffer is allocated
/// once at its largest size, so no reallocation leaves an unwiped copy behind; each chunk is
/// zeroed on the JS side after it was copied.
async fn read_body(response: &web_sys::Response) -> Result<Zeroizing<Vec<u8>>, ReadFailure> {
    let mut body = Zeroizing::new(Vec::with_capacity(MAX_BODY_BYTES));
    let Some(stream) = response.body() else {
        return Ok(body);
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|_| ReadFailure::Stream)?;
        if get(&chunk, "done").as_bool() == Some(true) {
            return Ok(body);
        }
        let value: js_sys::Uint8Array = get(&chunk, "value")
            .dyn_into()
            .map_err(|_| ReadFailure::Stream)?;
        let len = value.length() as usize;
        if body.len() + len > MAX_BODY_BYTES {
            value.fill(0, 0, value.length());
            let _ = reader.cancel();
            return Err(ReadFailure::TooLarge);
        }
        let start = body.len();
        body.resize(start + len, 0);
        value.copy_to(&mut body[start..]);
        value.fill(0, 0, value.length());
    }
}

/// Why a body could not be read.
enum ReadFailure {
    /// The stream failed (network, abort).
    Stream,
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
}

/// Fetches and validates one grant. `abort` lets `dispose()` cancel the request; `sent` is
/// called once the request's headers are in hand (the app's `headers` function has answered),
/// just before it is sent.
pub async fn fetch_grant(
    config: &BrokerConfig,
    abort: &AbortController,
    sent: impl FnOnce(),
) -> Result<Grant, Error> {
    // The deadline covers the whole attempt, the app's header function included: the engine
    // waits for every request it starts to end, so a header promise that never settles must not
    // leave the client "fetching" for good.
    let timed_out = std::rc::Rc::new(std::cell::Cell::new(false));
    let _deadline = {
        let abort = abort.clone();
        let timed_out = timed_out.clone();
        Timeout::new(config.timeout_ms, move || {
            timed_out.set(true);
            abort.abort();
        })
    };
    let headers = build_headers(&config.headers, &abort.signal())
        .await
        .map_err(|error| {
            if timed_out.get() {
                Error::Timeout
            } else if abort.signal().aborted() {
                Error::Disposed
            } else {
                error
            }
        })?;
    sent();
    // The request is built here rather than with gloo-net's `RequestBuilder`, which re-parses
    // the URL and formats its query string (`core::fmt` in every user's bundle); gloo-net
    // sends it. Its `RequestInit` is an object of this module's making, without a prototype
    // (`js::dictionary`): web-sys's typed setters would be six glue functions, and its enums
    // (`RequestCache`, `RequestCredentials`, `RequestRedirect`) a string table each in the glue,
    // for values that are constants here; and its `new Object()` inherits page pollution.
    let init = dictionary(&[
        (
            "method",
            JsValue::from_str(if config.post { "POST" } else { "GET" }),
        ),
        ("headers", headers.into()),
        // The token must never land in the HTTP cache.
        ("cache", JsValue::from_str("no-store")),
        ("credentials", JsValue::from_str(config.credentials)),
        // A redirect (typically to a login page) becomes a visible `redirected` error. With
        // "error" Chromium reports it as a plain network failure, indistinguishable from an
        // unreachable broker (docs/ARCHITECTURE.md), so "manual" it is.
        ("redirect", JsValue::from_str("manual")),
        ("signal", abort.signal().into()),
    ]);
    let request = web_sys::Request::new_with_str_and_init(&config.url, init.unchecked_ref())
        .map(Request::from)
        .map_err(|_| Error::Network)?;
    let response = request.send().await.map_err(|_| {
        if timed_out.get() {
            Error::Timeout
        } else if abort.signal().aborted() {
            Error::Disposed
        } else {
            Error::Network
        }
    })?;
    // gloo-net sent it; the answer is read as the browser's own `Response` (gloo-net's
    // `type_()` maps the type through an enum: a string table in the glue).
    let response = web_sys::Response::from(response);
    if text(&response, "type") == "opaqueredirect" {
        return Err(Error::Redirected);
    }
    let status = response.status();
    if status == 0 {
        return Err(Error::Network);
    }
    let header = |name: &str| response.headers().get(name).ok().flatten();
    // The broker's clock (its `Date` header), when this origin may read it: absolute times
    // (`Retry-After` dates, `expiresOn`, a JWT's `exp`) are judged against it, so a wrong
    // browser clock does not matter (docs/ARCHITECTURE.md).
    let server_ms = header("date")
        .map(|d| js_sys::Date::parse(&d))
        .filter(|ms| ms.is_finite());
    if !(200..300).contains(&status) {
        let retry_after = header("retry-after").and_then(|value| {
            parse_digits(&value).or_else(|| {
                // An HTTP date has a weekday or month name and a time; `Date.parse` alone would
                // read junk such as "1.5" or "-1" as a date in 2001.
                let dated = value.bytes().any(|b| b.is_ascii_alphabetic())
                    && value.bytes().any(|b| b == b':');
                let now = server_ms.unwrap_or_else(|| clock::now().wall_ms);
                dated.then(|| retry_after_from_date(js_sys::Date::parse(&value), now))?
            })
        });
        return Err(Error::from_status(status, retry_after));
    }
    // Refused early when the length is stated; a length of ten digits or more is not read
    // here, and the body read below stops at the limit all the same.
    if header("content-length")
        .and_then(|n| parse_digits(&n))
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(Invalid::BodyTooLarge.into());
    }
    let content_type = header("content-type");
    let body = read_body(&response)
        .await
        .map_err(|failure| match failure {
            ReadFailure::TooLarge => Invalid::BodyTooLarge.into(),
            ReadFailure::Stream if timed_out.get() => Error::Timeout,
            ReadFailure::Stream if abort.signal().aborted() => Error::Disposed,
            ReadFailure::Stream => Error::Network,
        })?;
    parse_grant_at(
        &body[..],
        content_type.as_deref(),
        &BrowserJson,
        AnswerClock {
            local_ms: clock::now().wall_ms,
            server_ms,
        },
    )
}
