//! `new TokenClient(options)`: reading and validating the options once, at construction. Every
//! mistake here is kind `config` and throws from the constructor; nothing is checked later.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::RequestCredentials;

use crate::engine::token::check_broker_url;
use crate::engine::RefreshPolicy;
use crate::web::broker::{BrokerConfig, HeaderSource};
use crate::web::js_error::{config_error, to_js};

/// The option names `new TokenClient(options)` accepts.
const OPTION_KEYS: [&str; 8] = [
    "brokerUrl",
    "headers",
    "credentials",
    "method",
    "refreshMargin",
    "requestTimeout",
    "maxLifetime",
    "shareAcrossTabs",
];

/// The constructor's options, read with `Reflect` (no serde in the bundle). Unknown keys are
/// rejected, so that a typo (`brokerURL`) is a clear error instead of a silently ignored option.
struct Options {
    broker_url: String,
    headers: JsValue,
    credentials: Option<String>,
    method: Option<String>,
    refresh_margin: Option<f64>,
    request_timeout: Option<f64>,
    max_lifetime: Option<f64>,
    share_across_tabs: Option<bool>,
}

impl Options {
    fn read(options: &JsValue) -> Result<Options, JsValue> {
        let object: &js_sys::Object = options
            .dyn_ref()
            .filter(|_| options.is_object())
            .ok_or_else(|| config_error("options must be an object with a brokerUrl"))?;
        for key in js_sys::Object::keys(object).iter() {
            if !key
                .as_string()
                .is_some_and(|k| OPTION_KEYS.contains(&k.as_str()))
            {
                return Err(config_error(
                    "unknown option: the options are brokerUrl, headers, credentials, method, refreshMargin, requestTimeout, maxLifetime, shareAcrossTabs",
                ));
            }
        }
        let get = |key: &str| {
            let v =
                js_sys::Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
            (!v.is_undefined() && !v.is_null()).then_some(v)
        };
        let string = |key: &str, message: &'static str| match get(key) {
            None => Ok(None),
            Some(v) => v.as_string().map(Some).ok_or_else(|| config_error(message)),
        };
        let number = |key: &str, message: &'static str| match get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| config_error(message)),
        };
        Ok(Options {
            broker_url: string("brokerUrl", "brokerUrl must be a string")?
                .ok_or_else(|| config_error("brokerUrl is required"))?,
            headers: get("headers").unwrap_or(JsValue::UNDEFINED),
            credentials: string("credentials", "credentials must be a string")?,
            method: string("method", "method must be a string")?,
            refresh_margin: number("refreshMargin", "refreshMargin must be a number of seconds")?,
            request_timeout: number(
                "requestTimeout",
                "requestTimeout must be a number of milliseconds",
            )?,
            max_lifetime: number("maxLifetime", "maxLifetime must be a number of seconds")?,
            share_across_tabs: match get("shareAcrossTabs") {
                None => None,
                Some(v) => Some(
                    v.as_bool()
                        .ok_or_else(|| config_error("shareAcrossTabs must be a boolean"))?,
                ),
            },
        })
    }
}

/// What the constructor builds from valid options.
pub(crate) struct Settings {
    pub(crate) policy: RefreshPolicy,
    pub(crate) broker: BrokerConfig,
    pub(crate) share_across_tabs: bool,
}

impl Settings {
    /// Validates `options` (kind `config` on any mistake).
    pub(crate) fn from_options(options: &JsValue) -> Result<Settings, JsValue> {
        let options = Options::read(options)?;
        let url = resolve_broker_url(&options.broker_url)?;
        let credentials = match options.credentials.as_deref() {
            None | Some("same-origin") => RequestCredentials::SameOrigin,
            Some("include") => RequestCredentials::Include,
            Some("omit") => RequestCredentials::Omit,
            Some(_) => {
                return Err(config_error(
                    "credentials must be \"same-origin\", \"include\" or \"omit\"",
                ))
            }
        };
        let post = match options.method.as_deref() {
            None | Some("GET") => false,
            Some("POST") => true,
            Some(_) => return Err(config_error("method must be \"GET\" or \"POST\"")),
        };
        let headers = if options.headers.is_undefined() || options.headers.is_null() {
            HeaderSource::None
        } else if let Some(function) = options.headers.dyn_ref::<js_sys::Function>() {
            HeaderSource::Provider(function.clone())
        } else if options.headers.is_object() {
            let object: js_sys::Object = options.headers.clone().unchecked_into();
            let all_strings = js_sys::Object::entries(&object).iter().all(|entry| {
                let pair: js_sys::Array = entry.unchecked_into();
                pair.get(1).is_string()
            });
            if !all_strings {
                return Err(config_error(
                    "every value of the headers object must be a string",
                ));
            }
            HeaderSource::Static(object)
        } else {
            return Err(config_error(
                "headers must be an object or a function returning one",
            ));
        };
        let policy = RefreshPolicy::new(
            options.refresh_margin,
            options.request_timeout,
            options.max_lifetime,
        )
        .map_err(|e| to_js(&e))?;
        Ok(Settings {
            policy,
            broker: BrokerConfig {
                url,
                post,
                credentials,
                headers,
                timeout_ms: policy.request_timeout_ms,
            },
            share_across_tabs: options.share_across_tabs == Some(true),
        })
    }
}

/// Resolves and checks the broker URL against the page's location.
fn resolve_broker_url(raw: &str) -> Result<String, JsValue> {
    let base = js_sys::global()
        .dyn_into::<web_sys::Window>()
        .ok()
        .and_then(|w| w.location().href().ok());
    let relative = web_sys::Url::new(raw).is_err();
    let url = match (&base, relative) {
        (_, false) => web_sys::Url::new(raw),
        (Some(base), true) => web_sys::Url::new_with_base(raw, base),
        (None, true) => return Err(config_error("a relative brokerUrl needs a page location")),
    }
    .map_err(|_| config_error("brokerUrl is not a valid URL"))?;
    let same_origin = base
        .as_deref()
        .and_then(|b| web_sys::Url::new(b).ok())
        .is_some_and(|b| b.origin() == url.origin());
    let has_userinfo = !url.username().is_empty() || !url.password().is_empty();
    let host = url.hostname();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    check_broker_url(relative, same_origin, &url.protocol(), host, has_userinfo)
        .map_err(|e| to_js(&e))?;
    Ok(url.href())
}
