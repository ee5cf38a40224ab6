// Page lifecycle helpers for the browser tests: fire the events the client listens to, and make
// the document look hidden or visible (an own `visibilityState` property shadows the real one).
export function fire(target, type) {
  (target === "document" ? document : window).dispatchEvent(new Event(type));
}

export function setHidden(hidden) {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event("visibilitychange"));
}

export function restoreVisibility() {
  delete document.visibilityState;
  delete document.hidden;
}

// A laptop sleep no page event reports: `Date.now()` jumps ahead by `ms`, while
// `performance.now()` and the timers armed before it do not move (they stand still in sleep).
const realDateNow = Date.now;
export function shiftWallClock(ms) {
  Date.now = () => realDateNow.call(Date) + ms;
}

export function restoreWallClock() {
  Date.now = realDateNow;
}
