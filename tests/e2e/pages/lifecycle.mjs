// Measures, in whatever engine loads it, what the refresh rules depend on (tests/e2e/engines/
// lifecycle.mjs drives it through `window.lc`; docs/BROWSERS.md records the numbers):
//   - a chain of 100 ms timers (each armed from the previous callback, so the nesting level
//     passes 5 — the timers browsers throttle hardest in hidden pages): every fire time and the
//     visibility state at that moment;
//   - the page lifecycle events the client listens to (visibilitychange, pageshow, focus, online)
//     and their neighbours (pagehide, blur, freeze, resume), with time and visibility;
//   - a TokenClient polled on every timer tick: any poll that found no usable token after the
//     first one arrived is a gap, and every token/expired/error event is recorded.
// It never logs a token.

import init, { TokenClient } from "/pkg/speech_token_client.js";

const t0 = performance.now();
const now = () => Math.round(performance.now() - t0);
const events = [];
for (const [target, types] of [
  [document, ["visibilitychange", "freeze", "resume"]],
  [window, ["pageshow", "pagehide", "focus", "blur", "online", "offline"]],
]) {
  for (const type of types) {
    target.addEventListener(type, (e) => events.push({
      type, at: now(), state: document.visibilityState, persisted: e.persisted ?? null,
    }));
  }
}

await init();
const params = new URLSearchParams(location.search);
const client = new TokenClient({ brokerUrl: "/api/speech-token" });
const clientEvents = [];
for (const name of ["token", "expired", "error"]) {
  client.on(name, (d) => clientEvents.push({ name, at: now(), state: document.visibilityState, kind: d?.error?.kind ?? null }));
}

const ticks = []; // [at, hidden ? 1 : 0]
const gaps = [];
let first = false;
let running = false;
const period = Number(params.get("period") ?? 100);
function tick() {
  if (!running) return;
  ticks.push([now(), document.hidden ? 1 : 0]);
  const usable = client.token !== undefined && client.expiresAt > Date.now();
  if (usable) first = true;
  else if (first) gaps.push({ at: now(), state: document.visibilityState, status: client.status });
  setTimeout(tick, period);
}

window.lc = {
  loadedAt: Date.now(),
  support: {
    freezeEvents: "onfreeze" in document,
    webLocks: typeof navigator.locks?.request === "function",
    broadcastChannel: typeof BroadcastChannel === "function",
    weakRef: typeof WeakRef === "function",
    finalizationRegistry: typeof FinalizationRegistry === "function",
    requestIdleCallback: typeof requestIdleCallback === "function",
    schedulerPostTask: typeof globalThis.scheduler?.postTask === "function",
    userAgent: navigator.userAgent,
  },
  async start() {
    await client.getToken();
    running = true;
    setTimeout(tick, period);
    return true;
  },
  stop() { running = false; client.dispose(); },
  /**
   * Leaves for the away page, which comes back here by itself (history.back()) after `awayMs`:
   * the round trip runs in the pages, from their own timers, after the WebDriver script that
   * called this has returned.
   */
  leaveFor(awayMs) {
    window.lc.mark("leave");
    const away = document.getElementById("away");
    away.href = `/lifecycle-away.html?back=${awayMs}`;
    setTimeout(() => away.click(), 0);
    return now();
  },
  mark(label) { events.push({ type: `mark:${label}`, at: now(), state: document.visibilityState, persisted: null }); return now(); },
  state: () => ({
    now: now(), visibility: document.visibilityState, hasFocus: document.hasFocus(), ticks, events, gaps, clientEvents,
    status: client.status, requestCount: client.requestCount, usable: client.token !== undefined,
    // Chromium: why this document was not restored from the back/forward cache, if it was not
    notRestoredReasons: JSON.parse(JSON.stringify(performance.getEntriesByType("navigation")[0]?.notRestoredReasons ?? null)),
  }),
};
document.getElementById("status").textContent = "ready";
