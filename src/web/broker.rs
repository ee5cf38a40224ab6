//! One request to the token broker, with the safety settings that keep the token out of every
//! cache and away from redirects.

use gloo_net::http::{Method, RequestBuilder};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, AbortSignal, Headers, RequestCache, RequestCredentials, RequestRedirect,
    ResponseType,
};

use crate::engine::token::{parse_grant, Field, Json, JsonError, MAX_BODY_BYTES};
use crate::engine::Grant;
use crate::error::{parse_retry_after, Error, Invalid};
use crate::web::clock;
use crate::web::timer::Timeout;

/// Where the extra request headers come from.
#[derive(Clone)]
pub enum HeaderSource {
    /// No extra headers.
    None,
    /// The same headers on every request.
    Static(js_sys::Object),
    /// A function returning headers (or a promise of them), called before every request: for
    /// the app's own short-lived session bearer.
    Provider(js_sys::Function),
}

/// How to reach the broker. Validated once, at construction.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Absolute URL of the token endpoint.
    pub url: String,
    /// GET or POST (POST sends an empty body).
    pub post: bool,
    /// Cookie policy for the request.
    pub credentials: RequestCredentials,
    /// Extra headers.
    pub headers: HeaderSource,
    /// Abort the request after this long.
    pub timeout_ms: f64,
}

/// JSON decoding with the browser's own `JSON.parse`, fields read with `Reflect.get`: no JSON
/// parser and no serde in the wasm bundle.
pub struct BrowserJson;

impl Json for BrowserJson {
    type Object = JsValue;

    fn parse_object(&self, text: &str) -> Result<JsValue, JsonError> {
        let value = js_sys::JSON::parse(text).map_err(|_| JsonError::Syntax)?;
        if value.is_object() && !js_sys::Array::is_array(&value) {
            Ok(value)
        } else {
            Err(JsonError::Shape)
        }
    }

    fn field(&self, object: &JsValue, key: &str) -> Field {
        let value = js_sys::Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::NULL);
        if value.is_undefined() || value.is_null() {
            Field::Absent
        } else if let Some(s) = value.as_string() {
            Field::Str(s)
        } else if let Some(n) = value.as_f64() {
            Field::Num(n)
        } else {
            Field::Other
        }
    }
}

const HEADERS_FAILED: &str =
    "the headers option threw, rejected, or gave a value that is not an object of strings";

/// Awaits `promise`, giving up (rejecting) as soon as `signal` aborts: the request timeout or
/// `dispose()` must end a wait on the app's header function as well as the fetch itself.
async fn until_aborted(promise: js_sys::Promise, signal: &AbortSignal) -> Result<JsValue, JsValue> {
    let mut reject_on_abort = None;
    let aborted = js_sys::Promise::new(&mut |_, reject| reject_on_abort = Some(reject));
    signal.set_onabort(reject_on_abort.as_ref());
    let either = js_sys::Promise::race(&js_sys::Array::of2(&promise, &aborted));
    let result = JsFuture::from(either).await;
    signal.set_onabort(None);
    result
}

async fn build_headers(source: &HeaderSource, signal: &AbortSignal) -> Result<Headers, Error> {
    let headers = Headers::new().map_err(|_| Error::Config(HEADERS_FAILED))?;
    headers
        .set("Accept", "application/json, text/plain")
        .map_err(|_| Error::Config(HEADERS_FAILED))?;
    let object = match source {
        HeaderSource::None => return Ok(headers),
        HeaderSource::Static(object) => JsValue::from(object.clone()),
        HeaderSource::Provider(function) => {
            let value = function
                .call0(&JsValue::UNDEFINED)
                .map_err(|_| Error::Config(HEADERS_FAILED))?;
            let promise = js_sys::Promise::resolve(&value);
            until_aborted(promise, signal)
                .await
                .map_err(|_| Error::Config(HEADERS_FAILED))?
        }
    };
    if object.is_undefined() || object.is_null() {
        return Ok(headers);
    }
    let object: js_sys::Object = object
        .dyn_into()
        .map_err(|_| Error::Config(HEADERS_FAILED))?;
    for entry in js_sys::Object::entries(&object).iter() {
        let pair: js_sys::Array = entry.unchecked_into();
        let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            return Err(Error::Config(HEADERS_FAILED));
        };
        headers
            .set(&name, &value)
            .map_err(|_| Error::Config(HEADERS_FAILED))?;
    }
    Ok(headers)
}

/// Fetches and validates one grant. `abort` lets `dispose()` cancel the request.
pub async fn fetch_grant(config: &BrokerConfig, abort: &AbortController) -> Result<Grant, Error> {
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
    let method = if config.post {
        Method::POST
    } else {
        Method::GET
    };
    let request = RequestBuilder::new(&config.url)
        .method(method)
        .headers(gloo_net::http::Headers::from_raw(headers))
        // The token must never land in the HTTP cache.
        .cache(RequestCache::NoStore)
        .credentials(config.credentials)
        // A redirect (typically to a login page) becomes a visible `redirected` error. With
        // "error" Chromium reports it as a plain network failure, indistinguishable from an
        // unreachable broker (DESIGN.md), so "manual" it is.
        .redirect(RequestRedirect::Manual)
        .abort_signal(Some(&abort.signal()));
    let response = request.send().await.map_err(|_| {
        if timed_out.get() {
            Error::Timeout
        } else if abort.signal().aborted() {
            Error::Disposed
        } else {
            Error::Network
        }
    })?;
    if response.type_() == ResponseType::Opaqueredirect {
        return Err(Error::Redirected);
    }
    let status = response.status();
    if status == 0 {
        return Err(Error::Network);
    }
    let header = |name: &str| response.headers().get(name);
    if !(200..300).contains(&status) {
        let retry_after = header("retry-after").as_deref().and_then(parse_retry_after);
        return Err(Error::from_status(status, retry_after));
    }
    if header("content-length")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES)
    {
        return Err(Invalid::BodyTooLarge.into());
    }
    let content_type = header("content-type");
    let body = response.text().await.map_err(|_| {
        if timed_out.get() {
            Error::Timeout
        } else {
            Error::Network
        }
    })?;
    parse_grant(
        &body,
        content_type.as_deref(),
        &BrowserJson,
        clock::now().wall_ms,
    )
}
