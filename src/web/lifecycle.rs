//! Page lifecycle listeners: the moments when timers may have been frozen or throttled and the
//! engine must look at the clock again. Each [`Listener`] unregisters itself when dropped.

use wasm_bindgen::prelude::*;
use web_sys::EventTarget;

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

/// Whether the document is hidden now (`false` where there is no document, e.g. a worker).
pub fn page_hidden() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden())
}

/// Registers `visibilitychange`, `pageshow`, `focus` and `online`. Returns no listeners where
/// there is no window (a worker): the engine then relies on its timer and on `getToken()`.
pub fn watch_page(on_event: impl Fn(PageEvent) + Clone + 'static) -> Vec<Listener> {
    let Some(window) = web_sys::window() else {
        return Vec::new();
    };
    // One closure type for all four (each closure type costs its own glue): `None` stands for
    // the visibility, read when the event comes.
    let document: Option<EventTarget> = window.document().map(Into::into);
    let window: EventTarget = window.into();
    let events: [(Option<&EventTarget>, &'static str, Option<PageEvent>); 4] = [
        (document.as_ref(), "visibilitychange", None),
        (Some(&window), "pageshow", Some(PageEvent::Recheck)),
        (Some(&window), "focus", Some(PageEvent::Recheck)),
        (Some(&window), "online", Some(PageEvent::Online)),
    ];
    let mut listeners = Vec::new();
    for (target, kind, event) in events {
        let Some(target) = target else { continue };
        let on = on_event.clone();
        listeners.extend(Listener::new(target, kind, move || {
            on(event.unwrap_or_else(|| PageEvent::Visibility(page_hidden())))
        }));
    }
    listeners
}
