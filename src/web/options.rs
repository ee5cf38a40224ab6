//! `new TokenClient(options)`: reading and validating the options once, at construction. Every
//! mistake here is kind `config` and throws from the constructor; nothing is checked later.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::engine::token::{check_broker_url, read_fields, Field};
use crate::engine::RefreshPolicy;
use crate::web::broker::{request_headers, unbracket, BadHeaders, BrokerConfig, HeaderSource};
use crate::web::js::{dictionary, get, given, given_keys, set, text};
use crate::web::js_error::{config_error, to_js};

/// The option names, in the order the "unknown option" message lists them and [`Options`]
/// holds them.
const OPTION_NAMES: &[&str; 8] = &[
    "brokerUrl",
    "headers",
    "credentials",
    "method",
    "refreshMargin",
    "requestTimeout",
    "maxLifetime",
    "shareAcrossTabs",
];

/// The constructor's options, read by serde-wasm-bindgen from a snapshot ([`snapshot`]).
/// Values are read leniently ([`Field`]) so that a wrong type gets this module's message for
/// that option (serde's own messages would need `core::fmt`). serde-wasm-bindgen reads only the
/// names it is given, so unknown keys (a typo: `brokerURL`) are refused by [`Options::read`]'s
/// own check of every key.
struct Options {
    broker_url: Field,
    /// An object or a function: kept as the JS value, taken from the options snapshot.
    headers: JsValue,
    credentials: Field,
    method: Field,
    refresh_margin: Field,
    request_timeout: Field,
    max_lifetime: Field,
    share_across_tabs: Field,
}

fn string(field: Field, message: &'static str) -> Result<Option<String>, JsValue> {
    match field {
        Field::Absent => Ok(None),
        Field::Str(s) => Ok(Some(s)),
        _ => Err(config_error(message)),
    }
}

fn number(field: Field, message: &'static str) -> Result<Option<f64>, JsValue> {
    match field {
        Field::Absent => Ok(None),
        Field::Num(n) => Ok(Some(n)),
        _ => Err(config_error(message)),
    }
}

impl Options {
    fn read(options: &JsValue) -> Result<Options, JsValue> {
        if !options.is_object() {
            return Err(config_error("options must be an object with a brokerUrl"));
        }
        // serde-wasm-bindgen reads an object by looking up only the names it is given, so a
        // typo (`brokerURL`) would pass unseen: every key is checked here first, inherited
        // ones (`Object.create(defaults)`) included.
        let keys = given_keys(options)
            .map_err(|_| config_error("options must be an object with a brokerUrl"))?;
        let known = keys.iter().all(|key| {
            key.as_string()
                .is_some_and(|key| OPTION_NAMES.contains(&key.as_str()))
        });
        if !known {
            return Err(config_error(
                "unknown option: the options are brokerUrl, headers, credentials, method, refreshMargin, requestTimeout, maxLifetime, shareAcrossTabs",
            ));
        }
        let (snapshot, headers) = snapshot(options)?;
        let mut fields: [Field; 8] = Default::default();
        read_fields(
            serde_wasm_bindgen::Deserializer::from(snapshot),
            OPTION_NAMES,
            &mut fields,
        )
        .map_err(|_| config_error("options must be an object with a brokerUrl"))?;
        let [broker_url, _, credentials, method, refresh_margin, request_timeout, max_lifetime, share_across_tabs] =
            fields;
        Ok(Options {
            broker_url,
            headers,
            credentials,
            method,
            refresh_margin,
            request_timeout,
            max_lifetime,
            share_across_tabs,
        })
    }
}

/// The options as a plain object of this module's making, each option read once with its
/// exceptions caught: serde-wasm-bindgen's reads do not catch, and an exception from an app's
/// getter or proxy trap unwinding through wasm frames leaves the module's stack and state
/// broken for every client on the page. A value other than a primitive (an object, a symbol, a
/// bigint) stands as a fresh empty object, which reads as "not a string, number or boolean"
/// (the option's own message) without running any of the app's code. `headers` is returned as
/// it is (read by `request_headers`, whose reads all catch) and left out of the copy
/// (serde-wasm-bindgen would read an object's entries). The copy has no prototype: a getter that
/// page code put on `Object.prototype` (where a getter without a setter also makes a plain
/// assignment fail) is never reached by serde-wasm-bindgen's reads, which do not catch, and a
/// name missing from the copy reads as absent.
fn snapshot(options: &JsValue) -> Result<(JsValue, JsValue), JsValue> {
    let copy = dictionary(&[]);
    let mut headers = JsValue::UNDEFINED;
    for &name in OPTION_NAMES {
        let value = given(options, name).map_err(|_| {
            config_error("options could not be read (a getter or proxy trap threw)")
        })?;
        if name == "headers" {
            headers = value;
            continue;
        }
        let primitive = value.is_undefined()
            || value.is_null()
            || value.is_string()
            || value.as_f64().is_some()
            || value.as_bool().is_some();
        let value = if primitive {
            value
        } else {
            js_sys::Object::new().into()
        };
        set(&copy, name, &value);
    }
    Ok((copy, headers))
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
        let broker_url = string(options.broker_url, "brokerUrl must be a string")?
            .ok_or_else(|| config_error("brokerUrl is required"))?;
        let credentials = string(options.credentials, "credentials must be a string")?;
        let method = string(options.method, "method must be a string")?;
        let refresh_margin = number(
            options.refresh_margin,
            "refreshMargin must be a number of seconds",
        )?;
        let request_timeout = number(
            options.request_timeout,
            "requestTimeout must be a number of milliseconds",
        )?;
        let max_lifetime = number(
            options.max_lifetime,
            "maxLifetime must be a number of seconds",
        )?;
        let share_across_tabs = match options.share_across_tabs {
            Field::Absent => false,
            Field::Bool(b) => b,
            _ => return Err(config_error("shareAcrossTabs must be a boolean")),
        };
        let url = resolve_broker_url(&broker_url)?;
        let credentials = match credentials.as_deref() {
            None | Some("same-origin") => "same-origin",
            Some("include") => "include",
            Some("omit") => "omit",
            Some(_) => {
                return Err(config_error(
                    "credentials must be \"same-origin\", \"include\" or \"omit\"",
                ))
            }
        };
        let post = match method.as_deref() {
            None | Some("GET") => false,
            Some("POST") => true,
            Some(_) => return Err(config_error("method must be \"GET\" or \"POST\"")),
        };
        let headers = if options.headers.is_undefined() || options.headers.is_null() {
            HeaderSource::None
        } else if let Some(function) = options.headers.dyn_ref::<js_sys::Function>() {
            HeaderSource::Provider(function.clone())
        } else if options.headers.is_object() {
            match request_headers(&options.headers) {
                // The checked `Headers`, kept: a one-shot iterator (a Map's `entries()`) could
                // not be read again for the next request.
                Ok(checked) => HeaderSource::Static(checked.into()),
                Err(BadHeaders::NotAString) => {
                    return Err(config_error(
                        "every value of the headers object must be a string",
                    ))
                }
                Err(BadHeaders::Refused) => {
                    return Err(config_error(
                        "headers holds a name or value the browser refuses (or is not a record, a Headers or name/value pairs)",
                    ))
                }
            }
        } else {
            return Err(config_error(
                "headers must be an object or a function returning one",
            ));
        };
        let policy = RefreshPolicy::new(refresh_margin, request_timeout, max_lifetime)
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
            share_across_tabs,
        })
    }
}

/// Resolves and checks the broker URL against the page's location.
fn resolve_broker_url(raw: &str) -> Result<String, JsValue> {
    // The window's or the worker's own location (`WorkerGlobalScope.location`).
    let base = get(&get(&js_sys::global(), "location"), "href").as_string();
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
        .is_some_and(|b| text(&b, "origin") == text(&url, "origin"));
    let has_userinfo = !text(&url, "username").is_empty() || !text(&url, "password").is_empty();
    let host = text(&url, "hostname");
    let host = unbracket(&host);
    check_broker_url(
        relative,
        same_origin,
        &text(&url, "protocol"),
        host,
        has_userinfo,
    )
    .map_err(|e| to_js(&e))?;
    Ok(text(&url, "href"))
}
