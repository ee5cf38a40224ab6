//! The Speech SDK side: attached targets, `speechConfig()`, `tokenCredential()`.
//!
//! Duck-typed on purpose: no dependency on the SDK package. A target is any object with an
//! `authorizationToken` property (SpeechConfig, SpeechTranslationConfig, SpeechRecognizer,
//! TranslationRecognizer, ConversationTranscriber, SpeechSynthesizer, DialogServiceConnector…).
//! Recognizers copy their config at creation, so every live object must be attached and set on
//! every refresh.
//!
//! Closed objects are detached. The real SDK (1.52) does not throw from the setter once an
//! object is closed (its `close()` only sets a private flag), so `attach()` hooks the object's
//! own `close` and `dispose` methods (own-property wrappers that call the original with the same
//! `this`, arguments and result): every way the SDK disposes an object goes through `dispose`,
//! and `close` is the typed public one. A setter that throws still detaches too. `detach()` and
//! `dispose()` remove the hooks.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::engine::token::{validate_endpoint, validate_region};
use crate::engine::Ms;
use crate::error::Error;
use crate::web::broker::BrowserJson;
use crate::web::client::TokenClient;
use crate::web::clock;
use crate::web::hooks;
use crate::web::js::{abort_error, get, given, given_keys, object, promise, until_aborted};
use crate::web::js_error::{config_error, to_js};
use crate::web::shell::{detach_detail, EventKind, Shell};

const TOKEN_KEY: &str = "authorizationToken";

impl Shell {
    /// Sets the current token on every live target; detaches collected or closed ones.
    pub(crate) fn set_targets(&self) {
        let Some(token) = self.token_js() else { return };
        for weak in self.targets() {
            // A setter may have disposed the client (or detached targets): stop handing out.
            if self.disposed() {
                return;
            }
            let Some(target) = weak.deref() else {
                // Collected: it just goes.
                self.drop_target(&weak);
                continue;
            };
            // Only a throwing setter (a closed SDK object) drops a target that is still there.
            if js_sys::Reflect::set(&target, &JsValue::from_str(TOKEN_KEY), &token).is_ok() {
                continue;
            }
            self.drop_target(&target);
            hooks::unhook(&target, self.id());
            // The setter threw: the SDK object was closed. Tell the app, without the token.
            self.emit(EventKind::Detach, &detach_detail(&target));
        }
    }
}

/// Where the config points, decided by [`choose_route`].
enum Target {
    Endpoint(String),
    Region(String),
}

/// The precedence (README "Speech SDK recipes"): an explicit `endpoint` argument, then an
/// explicit `region` argument, then the broker's endpoint, then the broker's region. An explicit
/// argument always wins over what the broker said.
fn choose_route(
    arg_region: Option<String>,
    arg_endpoint: Option<String>,
    broker_region: Option<String>,
    broker_endpoint: Option<String>,
) -> Option<Target> {
    arg_endpoint
        .map(Target::Endpoint)
        .or(arg_region.map(Target::Region))
        .or(broker_endpoint.map(Target::Endpoint))
        .or(broker_region.map(Target::Region))
}

/// `speechConfig(sdk, { region?, endpoint? })`'s options, checked like the constructor's (a typo
/// or a malformed value never silently changes where the audio goes): only those two keys, a
/// region name as a broker's would be, an endpoint by the broker answer's rules (`wss:`/`https:`,
/// `ws:`/`http:` on loopback only) as a string or a `URL`. Read before the token is asked for,
/// outside any borrow (a getter may call back into the client).
fn route_options(options: &JsValue) -> Result<(Option<String>, Option<String>), JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok((None, None));
    }
    if !options.is_object() {
        return Err(config_error(
            "speechConfig options must be an object: { region?, endpoint? }",
        ));
    }
    let bad_options = || config_error("speechConfig options could not be read");
    let known = given_keys(options)
        .map_err(|_| bad_options())?
        .iter()
        .all(|key| matches!(key.as_string().as_deref(), Some("region" | "endpoint")));
    if !known {
        return Err(config_error(
            "unknown speechConfig option: the options are region and endpoint",
        ));
    }
    let text = |key: &str| -> Result<Option<String>, JsValue> {
        let value = given(options, key).map_err(|_| bad_options())?;
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        // A `URL` object stands for its `href`.
        let value = if value.is_instance_of::<web_sys::Url>() {
            get(&value, "href")
        } else {
            value
        };
        value
            .as_string()
            .map(Some)
            .ok_or_else(|| config_error("speechConfig region and endpoint must be strings"))
    };
    let region = text("region")?;
    if let Some(region) = &region {
        validate_region(region)
            .map_err(|_| config_error("region must be an Azure region name such as westeurope"))?;
    }
    let endpoint = text("endpoint")?;
    if let Some(endpoint) = &endpoint {
        validate_endpoint(endpoint, &BrowserJson).map_err(|_| {
            config_error(
                "endpoint must be a wss: or https: URL (ws: or http: only on a loopback host)",
            )
        })?;
    }
    Ok((region, endpoint))
}

/// The factories a config is built with.
const FACTORIES: [&str; 2] = ["fromAuthorizationToken", "fromEndpoint"];

/// The SDK's config class (`SpeechConfig` or `SpeechTranslationConfig`) with both factories,
/// checked before a token is asked for: a call that cannot succeed costs no broker request,
/// and a failing broker does not hide the mistake behind its own error.
fn config_class(sdk: &JsValue, translation: bool) -> Result<JsValue, JsValue> {
    let (class, messages) = if translation {
        (
            "SpeechTranslationConfig",
            [
                "the first argument must be the Speech SDK namespace (with SpeechTranslationConfig)",
                "the Speech SDK lacks a SpeechTranslationConfig factory this module needs (fromAuthorizationToken, fromEndpoint)",
            ],
        )
    } else {
        (
            "SpeechConfig",
            [
                "the first argument must be the Speech SDK namespace (with SpeechConfig)",
                "the Speech SDK lacks a SpeechConfig factory this module needs (fromAuthorizationToken, fromEndpoint)",
            ],
        )
    };
    let class_value = get(sdk, class);
    if !class_value.is_function() {
        return Err(config_error(messages[0]));
    }
    if !FACTORIES
        .iter()
        .all(|name| get(&class_value, name).is_function())
    {
        return Err(config_error(messages[1]));
    }
    Ok(class_value)
}

/// Builds `fromAuthorizationToken(token, region)` or `fromEndpoint(new URL(endpoint))` with the
/// class [`config_class`] checked.
fn build_config(
    class_value: &JsValue,
    token: &JsValue,
    target: Option<Target>,
) -> Result<JsValue, JsValue> {
    let call = |name: &str, args: &js_sys::Array| -> Result<JsValue, JsValue> {
        // Checked before the token was asked for; read again (a getter may answer otherwise).
        let f: js_sys::Function = get(class_value, name)
            .dyn_into()
            .map_err(|_| config_error("the Speech SDK lacks a config factory this module needs"))?;
        f.apply(class_value, args)
    };
    let region = match target {
        Some(Target::Endpoint(endpoint)) => {
            let url =
                web_sys::Url::new(&endpoint).map_err(|_| config_error("endpoint is not a URL"))?;
            let config = call("fromEndpoint", &js_sys::Array::of1(&url))?;
            js_sys::Reflect::set(&config, &JsValue::from_str(TOKEN_KEY), token)?;
            return Ok(config);
        }
        Some(Target::Region(region)) => region,
        None => {
            return Err(config_error(
                "the broker gave neither region nor endpoint: pass { region } or { endpoint }",
            ))
        }
    };
    call(
        "fromAuthorizationToken",
        &js_sys::Array::of2(token, &JsValue::from_str(&region)),
    )
}

async fn speech_config(
    shell: Rc<Shell>,
    sdk: JsValue,
    options: JsValue,
    translation: bool,
) -> Result<JsValue, JsValue> {
    if !sdk.is_object() && !sdk.is_function() {
        return Err(config_error(
            "the first argument must be the Speech SDK namespace",
        ));
    }
    let class_value = config_class(&sdk, translation)?;
    let (region_option, endpoint_option) = route_options(&options)?;
    let token = JsFuture::from(shell.get_token()).await?;
    let (broker_region, broker_endpoint) = shell.read(|m| {
        let route = m.route();
        (
            route.and_then(|r| r.region.clone()),
            route.and_then(|r| r.endpoint.clone()),
        )
    });
    let target = choose_route(
        region_option,
        endpoint_option,
        broker_region,
        broker_endpoint,
    );
    let config = build_config(&class_value, &token, target)?;
    attach(&shell, &config)?;
    Ok(config)
}

fn attach(shell: &Rc<Shell>, target: &JsValue) -> Result<(), JsValue> {
    // By type, not `instanceof Object`: an object of another realm (an iframe's SDK copy) or
    // with a null prototype is a target too.
    let Some(object) = as_object(target) else {
        return Err(config_error(
            "attach() needs an object with an authorizationToken property",
        ));
    };
    if !js_sys::Reflect::has(object, &JsValue::from_str(TOKEN_KEY)).unwrap_or(false) {
        return Err(config_error(
            "attach() needs an object with an authorizationToken property",
        ));
    }
    if shell.disposed() {
        return Err(to_js(&Error::Disposed));
    }
    shell.in_service();
    let added = shell.with_targets(|targets| {
        let known = targets
            .iter()
            .any(|w| w.deref().is_some_and(|t| js_sys::Object::is(&t, object)));
        if !known {
            targets.push(js_sys::WeakRef::new(object));
        }
        !known
    });
    if added {
        hooks::hook(shell, object);
    }
    // Only a usable token: otherwise `get_token()` below lets the engine retire the held one
    // and fetch.
    let token = shell.usable_token_js(clock::now());
    match token {
        Some(token) => {
            // A throwing setter is a closed SDK object (as on a refresh): it is detached with
            // a `detach` event ("closed") and loses its hooks; the app's error is not rethrown.
            if js_sys::Reflect::set(object, &JsValue::from_str(TOKEN_KEY), &token).is_err() {
                hooks::unhook(object, shell.id());
                shell.target_closed(object);
            }
        }
        None => {
            // Start fetching; the token reaches the target when it arrives. Failures are
            // reported through the `error` event, so this promise's rejection is handled here.
            let promise = shell.get_token();
            let ignore: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
            let _ = promise.catch(&ignore);
            // Tiny and called at most once: let the JS garbage collector own it.
            let _ = ignore.into_js_value();
        }
    }
    Ok(())
}

/// What a `TokenCredential` hands out: the Entra access token itself. The SDK sends it as
/// `Authorization: Bearer <token>` to the endpoint given to `fromEndpoint(url, credential)`; the
/// `aad#<resourceId>#<token>` form is only for the `authorizationToken` property with a region.
/// So a broker answer in that form is unwrapped here (and nowhere else), with JS string methods:
/// the token is never copied into wasm memory.
fn bearer_form(token: JsValue) -> JsValue {
    let Some(text) = token.dyn_ref::<js_sys::JsString>() else {
        return token;
    };
    if !text.starts_with("aad#", 0) {
        return token;
    }
    let last = text.last_index_of("#", text.length() as i32);
    text.slice(last as u32 + 1, text.length()).into()
}

/// `value` as an object when it is one by type (an object or a function, of any realm and any
/// prototype); `dyn_ref::<Object>` asks `instanceof Object`, false for both of those.
fn as_object(value: &JsValue) -> Option<&js_sys::Object> {
    (value.is_object() || value.is_function()).then(|| value.unchecked_ref())
}

#[wasm_bindgen]
impl TokenClient {
    /// Keeps `target.authorizationToken` set to the current token: now (if one is held) and on
    /// every refresh. Held weakly: a collected target simply disappears; one whose setter throws
    /// (closed) is detached with a `detach` event. Asks for a token (as `getToken()` would)
    /// when none is usable.
    pub fn attach(
        &self,
        #[wasm_bindgen(unchecked_param_type = "AuthorizationTokenTarget")] target: JsValue,
    ) -> Result<(), JsValue> {
        attach(&self.shell, &target)
    }

    /// Stops updating `target`. Detaching an unknown target does nothing.
    pub fn detach(
        &self,
        #[wasm_bindgen(unchecked_param_type = "AuthorizationTokenTarget")] target: JsValue,
    ) {
        self.shell.drop_target(&target);
        if let Some(object) = as_object(&target) {
            hooks::unhook(object, self.shell.id());
        }
    }

    /// Number of attached targets still alive.
    #[wasm_bindgen(getter, js_name = attachedCount)]
    pub fn attached_count(&self) -> usize {
        self.shell
            .targets()
            .iter()
            .filter(|w| w.deref().is_some())
            .count()
    }

    /// Waits for a token and builds an attached `SpeechConfig`: `fromEndpoint(new URL(endpoint))`
    /// or `fromAuthorizationToken(token, region)`: your `endpoint`, then your `region`, then the
    /// broker's endpoint, then its region.
    #[wasm_bindgen(js_name = speechConfig, skip_typescript)]
    pub fn speech_config(&self, sdk: JsValue, options: Option<JsValue>) -> js_sys::Promise {
        promise(speech_config(
            self.shell.clone(),
            sdk,
            options.unwrap_or_default(),
            false,
        ))
    }

    /// The same as `speechConfig()`, for `SpeechTranslationConfig`.
    #[wasm_bindgen(js_name = speechTranslationConfig, skip_typescript)]
    pub fn speech_translation_config(
        &self,
        sdk: JsValue,
        options: Option<JsValue>,
    ) -> js_sys::Promise {
        promise(speech_config(
            self.shell.clone(),
            sdk,
            options.unwrap_or_default(),
            true,
        ))
    }

    /// An `@azure/core-auth` `TokenCredential` for `SpeechConfig.fromEndpoint(url, credential)`:
    /// the SDK calls its `getToken()` on every connection, and gets the client's current token.
    /// The credential keeps the client alive (its `getToken()` rejects with kind `disposed` after
    /// `dispose()`; a new one from a disposed client throws kind `disposed`).
    #[wasm_bindgen(js_name = tokenCredential, unchecked_return_type = "TokenCredentialLike")]
    pub fn token_credential(&self) -> Result<JsValue, JsValue> {
        if self.shell.disposed() {
            return Err(to_js(&Error::Disposed));
        }
        let shell = self.shell.clone();
        shell.in_service();
        // The same closure signature as the close hooks' (hooks.rs): one glue shim for both.
        let get_token = Closure::<dyn FnMut(JsValue, JsValue) -> Result<JsValue, JsValue>>::new(
            move |_scopes, options: JsValue| {
                let shell = shell.clone();
                // `options.abortSignal` (@azure/core-auth GetTokenOptions): an aborted call
                // rejects at once with an AbortError; the shared request goes on for the others.
                // Never one on `Object.prototype`: that `abortSignal` is not the SDK's.
                let signal = if options.is_object() {
                    given(&options, "abortSignal").unwrap_or_default()
                } else {
                    JsValue::UNDEFINED
                };
                if get(&signal, "aborted").as_bool() == Some(true) {
                    return Ok(js_sys::Promise::reject(&abort_error()).into());
                }
                let (pending, stop_listening) = until_aborted(shell.get_token(), &signal);
                Ok(promise(async move {
                    let outcome = JsFuture::from(pending).await;
                    stop_listening();
                    let served = outcome?;
                    // `dispose()` may have come in the microtasks since the token was served:
                    // a disposed client hands out nothing.
                    if shell.disposed() {
                        return Err(to_js(&Error::Disposed));
                    }
                    // The token and its times read together: the one held now, if usable (the
                    // served one may have been replaced in the microtask since). Its expiry is
                    // when it stops being handed out, so that a pipeline caching it by its
                    // expiry never uses it in the last seconds the SDK needs to connect.
                    let now = clock::now();
                    let (expires, refresh) = shell.read(|m| {
                        let times = m.schedule(now);
                        let expires = times.usable_until.unwrap_or(0.0);
                        (expires, times.next_refresh_at.unwrap_or(expires))
                    });
                    let token = bearer_form(shell.usable_token_js(now).unwrap_or(served));
                    Ok(object(&[
                        ("token", token),
                        ("expiresOnTimestamp", JsValue::from(expires)),
                        (
                            "refreshAfterTimestamp",
                            JsValue::from(refresh.min_ms(expires)),
                        ),
                        ("tokenType", JsValue::from_str("Bearer")),
                    ]))
                })
                .into())
            },
        );
        Ok(object(&[("getToken", get_token.into_js_value())]))
    }
}
