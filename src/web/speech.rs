//! The Speech SDK side: attached targets, `speechConfig()`, `tokenCredential()`.
//!
//! Duck-typed on purpose: no dependency on the SDK package. A target is any object with an
//! `authorizationToken` property (SpeechConfig, SpeechTranslationConfig, SpeechRecognizer,
//! TranslationRecognizer, ConversationTranscriber, SpeechSynthesizer, DialogServiceConnector…).
//! Recognizers copy their config at creation, so every live object must be attached and set on
//! every refresh; closed objects throw from the setter and are detached automatically.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::error::Error;
use crate::web::client::TokenClient;
use crate::web::js_error::{config_error, object, to_js};
use crate::web::shell::{EventKind, Shell};

const TOKEN_KEY: &str = "authorizationToken";

fn get(target: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

impl Shell {
    /// Sets the current token on every live target; detaches collected or closed ones.
    pub(crate) fn set_targets(&self) {
        let targets = self.targets();
        let Some(token) = self.token_js() else { return };
        let mut dead: Vec<js_sys::Object> = Vec::new();
        let mut collected = false;
        for weak in &targets {
            let Some(target) = weak.deref() else {
                collected = true;
                continue;
            };
            if js_sys::Reflect::set(&target, &JsValue::from_str(TOKEN_KEY), &token).is_err() {
                dead.push(target);
            }
        }
        if collected || !dead.is_empty() {
            self.with_targets(|targets| {
                targets.retain(|weak| match weak.deref() {
                    Some(t) => !dead.iter().any(|d| js_sys::Object::is(d, &t)),
                    None => false,
                })
            });
        }
        for target in dead {
            // The setter threw: the SDK object was closed. Tell the app, without the token.
            self.emit(
                EventKind::Detach,
                &object(&[
                    ("target", target.into()),
                    ("reason", JsValue::from_str("closed")),
                ]),
            );
        }
    }
}

/// Builds `fromAuthorizationToken(token, region)` or `fromEndpoint(new URL(endpoint))`.
fn build_config(
    sdk: &JsValue,
    class: &str,
    token: &JsValue,
    region: Option<String>,
    endpoint: Option<String>,
) -> Result<JsValue, JsValue> {
    let class_value = get(sdk, class);
    if !class_value.is_function() {
        return Err(config_error(
            "the first argument must be the Speech SDK namespace (with SpeechConfig)",
        ));
    }
    let call = |name: &str, args: &js_sys::Array| -> Result<JsValue, JsValue> {
        let f: js_sys::Function = get(&class_value, name).dyn_into().map_err(|_| {
            config_error("the Speech SDK lacks a SpeechConfig factory this module needs")
        })?;
        f.apply(&class_value, args)
    };
    if let Some(endpoint) = endpoint {
        let url =
            web_sys::Url::new(&endpoint).map_err(|_| config_error("endpoint is not a URL"))?;
        let config = call("fromEndpoint", &js_sys::Array::of1(&url))?;
        js_sys::Reflect::set(&config, &JsValue::from_str(TOKEN_KEY), token)?;
        return Ok(config);
    }
    let Some(region) = region else {
        return Err(config_error(
            "the broker gave neither region nor endpoint: pass { region } or { endpoint }",
        ));
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
    class: &'static str,
) -> Result<JsValue, JsValue> {
    if !sdk.is_object() && !sdk.is_function() {
        return Err(config_error(
            "the first argument must be the Speech SDK namespace",
        ));
    }
    let token = JsFuture::from(shell.get_token()).await?;
    // The app's options are read before the state is (a getter may call back into the client).
    let option = |key: &str| {
        if options.is_object() {
            get(&options, key).as_string()
        } else {
            None
        }
    };
    let (region_option, endpoint_option) = (option("region"), option("endpoint"));
    let (region, endpoint) = shell.read(|m| {
        let route = m.route();
        (
            region_option.or_else(|| route.and_then(|r| r.region.clone())),
            endpoint_option.or_else(|| route.and_then(|r| r.endpoint.clone())),
        )
    });
    let config = build_config(&sdk, class, &token, region, endpoint)?;
    attach(&shell, &config)?;
    Ok(config)
}

fn attach(shell: &Rc<Shell>, target: &JsValue) -> Result<(), JsValue> {
    let Some(object) = target
        .dyn_ref::<js_sys::Object>()
        .filter(|_| target.is_object() || target.is_function())
    else {
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
    shell.with_targets(|targets| {
        let known = targets
            .iter()
            .any(|w| w.deref().is_some_and(|t| js_sys::Object::is(&t, object)));
        if !known {
            targets.push(js_sys::WeakRef::new(object));
        }
    });
    let token = shell.token_js();
    match token {
        Some(token) => {
            js_sys::Reflect::set(object, &JsValue::from_str(TOKEN_KEY), &token)?;
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

#[wasm_bindgen]
impl TokenClient {
    /// Keeps `target.authorizationToken` set to the current token: now (if one is held) and on
    /// every refresh. Held weakly: a collected target simply disappears; one whose setter throws
    /// (closed) is detached with a `detach` event. Starts a fetch when no token is held yet.
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
        self.shell.with_targets(|targets| {
            targets.retain(|w| w.deref().is_some_and(|t| !js_sys::Object::is(&t, &target)))
        });
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
    /// when the broker (or `opts`) names an endpoint, else `fromAuthorizationToken(token, region)`.
    #[wasm_bindgen(js_name = speechConfig, skip_typescript)]
    pub fn speech_config(&self, sdk: JsValue, options: Option<JsValue>) -> js_sys::Promise {
        future_to_promise(speech_config(
            self.shell.clone(),
            sdk,
            options.unwrap_or_default(),
            "SpeechConfig",
        ))
    }

    /// The same as `speechConfig()`, for `SpeechTranslationConfig`.
    #[wasm_bindgen(js_name = speechTranslationConfig, skip_typescript)]
    pub fn speech_translation_config(
        &self,
        sdk: JsValue,
        options: Option<JsValue>,
    ) -> js_sys::Promise {
        future_to_promise(speech_config(
            self.shell.clone(),
            sdk,
            options.unwrap_or_default(),
            "SpeechTranslationConfig",
        ))
    }

    /// An `@azure/core-auth` `TokenCredential` for `SpeechConfig.fromEndpoint(url, credential)`:
    /// the SDK calls its `getToken()` on every connection, and gets the client's current token.
    /// The credential keeps the client alive (it rejects with kind `disposed` after `dispose()`).
    #[wasm_bindgen(js_name = tokenCredential, unchecked_return_type = "TokenCredentialLike")]
    pub fn token_credential(&self) -> JsValue {
        let shell = self.shell.clone();
        shell.in_service();
        let get_token = Closure::<dyn FnMut(JsValue, JsValue) -> js_sys::Promise>::new(
            move |_scopes, _options| {
                let shell = shell.clone();
                future_to_promise(async move {
                    let token = JsFuture::from(shell.get_token()).await?;
                    let (expires, refresh) = shell.read(|m| {
                        let expires = m.expires_at().unwrap_or(0.0);
                        (expires, m.next_refresh_at().unwrap_or(expires))
                    });
                    Ok(object(&[
                        ("token", token),
                        ("expiresOnTimestamp", JsValue::from(expires)),
                        ("refreshAfterTimestamp", JsValue::from(refresh.min(expires))),
                        ("tokenType", JsValue::from_str("Bearer")),
                    ]))
                })
            },
        );
        object(&[("getToken", get_token.into_js_value())])
    }
}
