//! Page lifecycle listeners: the moments when timers may have been frozen or throttled and the
//! engine must look at the clock again. Each [`Listener`] unregisters itself when dropped.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::EventTarget;

use crate::web::js::get;

/// One registered event listener; dropping it removes it.
#[must_use = "a Listener is removed as soon as it is dropped"]
pub struct Listener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut()>,
}

impl Listener {
    /// Listens for `kind` events on `target`.
    pub fn new(
        target: &EventTarget,
        kind: &'static str,
        callback: impl FnMut() + 'static,
    ) -> Option<Listener> {
        let callback = Closure::<dyn FnMut()>::new(callback);
        target
            .add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref())
            .ok()?;
        Some(Listener {
            target: target.clone(),
            kind,
            callback,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.callback.as_ref().unchecked_ref());
    }
}

/// What happened to the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEvent {
    /// The page was hidden (`true`) or shown (`false`).
    Visibility(bool),
    /// `pageshow` (back/forward cache) or `focus`: look at the clock again.
    Recheck,
    /// The network came back.
    Online,
}

/// The page's document: `globalThis.document` where it is an object (a window; `None` in a
/// worker). Read by name: web-sys's `window()` and `document()` would add an `instanceof Window`
/// check and two glue functions for what one property read says.
fn document() -> Option<EventTarget> {
    let document = get(&js_sys::global(), "document");
    document.is_object().then(|| document.unchecked_into())
}

/// Whether the document is hidden now (`false` where there is no document, e.g. a worker).
pub fn page_hidden() -> bool {
    document().is_some_and(|d| get(&d, "hidden").as_bool() == Some(true))
}

/// Registers `visibilitychange`, `pageshow`, `focus` and `online`. Returns no listeners where
/// there is no window (a worker): the engine then relies on its timer and on `getToken()`.
pub fn watch_page(on_event: impl Fn(PageEvent) + Clone + 'static) -> Vec<Listener> {
    let Some(document) = document() else {
        return Vec::new();
    };
    let window: EventTarget = js_sys::global().unchecked_into();
    // One closure type for all four (each closure type costs its own glue): `None` stands for
    // the visibility, read when the event comes.
    let events: [(&EventTarget, &'static str, Option<PageEvent>); 4] = [
        (&document, "visibilitychange", None),
        (&window, "pageshow", Some(PageEvent::Recheck)),
        (&window, "focus", Some(PageEvent::Recheck)),
        (&window, "online", Some(PageEvent::Online)),
    ];
    let mut listeners = Vec::new();
    for (target, kind, event) in events {
        let on = on_event.clone();
        listeners.extend(Listener::new(target, kind, move || {
            on(event.unwrap_or_else(|| PageEvent::Visibility(page_hidden())))
        }));
    }
    listeners
}
