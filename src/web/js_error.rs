//! The one conversion of [`Error`] into a JavaScript `Error` with `kind` (and `status`,
//! `retryAfter` where they apply). Happens once, at the boundary.

use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::web::js::{named_error, set};

/// The `name` of every error this module throws or rejects with.
pub const ERROR_NAME: &str = "SpeechTokenError";

/// Builds the JS `Error`. Its message is [`Error::text`] (static strings, no `core::fmt`),
/// which never holds a token.
pub fn to_js(error: &Error) -> JsValue {
    let js = named_error(&error.text(), ERROR_NAME);
    set(&js, "kind", &JsValue::from_str(error.kind()));
    if let Some(status) = error.status() {
        set(&js, "status", &JsValue::from(status));
    }
    if let Some(seconds) = error.retry_after() {
        set(&js, "retryAfter", &JsValue::from(seconds));
    }
    js.into()
}

/// A `config` error: bad options or arguments given by the app.
pub fn config_error(message: &'static str) -> JsValue {
    to_js(&Error::Config(message))
}
