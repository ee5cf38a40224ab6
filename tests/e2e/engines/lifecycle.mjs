// Hidden-page timers and the page lifecycle, measured in the engine named by E2E_ENGINE
// (chromium | firefox | webkit; see ../webdriver.mjs), with the real wasm client on the page
// (pages/lifecycle.mjs) and the reference broker in dev mode handing out 8-second tokens.
//
//   1. The lifecycle page runs a chain of 100 ms timers and a TokenClient, visible for 4 s, then
//      hidden for HIDDEN_MS (its window minimized), then shown again (window restored). Printed and
//      checked: the page really went hidden and came back (visibilitychange both ways), the timer
//      chain's intervals visible and hidden, and the client: no poll ever found it without a usable
//      token, no `expired` event, its refreshes kept going while hidden. With E2E_HIDDEN_MS ≥ 130 s
//      (scripts/test.sh does so for Chromium) the page's own chain reaches Chromium's whole-minute
//      stage, and the client's refresh timer (armed from the fetch's completion, not from a timer
//      callback) must escape it.
//   2. Leaving the page for longer than a token lives and coming back (history.back()): the page
//      comes back from the back/forward cache (pagehide, then pageshow with persisted = true; its
//      timers were frozen meanwhile) and the client fetches a fresh token right on pageshow.
//   3. The APIs the client relies on or degrades without (Web Locks, BroadcastChannel, WeakRef,
//      freeze/resume events) are printed and checked against EXPECTED below.
//
// EXPECTED is what was measured on these machines (docs/BROWSERS.md has the numbers and what the
// client does about each): a change in an engine fails this test instead of going unnoticed.
//
// Run from the repository root:  E2E_ENGINE=firefox node --test tests/e2e/engines/lifecycle.mjs
// (webkit under xvfb-run -a).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startBroker, requirePkg, sleep } from "../helpers.mjs";
import { ENGINE, launch } from "../webdriver.mjs";

const TTL = 8;
const HIDDEN_MS = Number(process.env.E2E_HIDDEN_MS ?? 20_000);
/** Time given to the pages' own navigations before the test runs a script again (bfcache test). */
const NAVIGATION_SETTLE_MS = 2_000;

/**
 * Per engine: the range of the median interval of a hidden page's chained 100 ms timer (ms);
 * whether freeze/resume exist; whether history.back() restores the page from the bfcache.
 */
const EXPECTED = {
  // Chromium: chained timers go to whole minutes after ~1 minute hidden ("intensive wake up
  // throttling"; Chrome documents 5 minutes, headless Chromium 156 does it after one).
  chromium: { hiddenMedianMs: [900, 1100], intensiveAfterMs: 60_000, freezeEvents: true, bfcache: true },
  // Firefox and WebKitGTK: whole seconds, no later stage (7 minutes measured)
  firefox: { hiddenMedianMs: [900, 1100], intensiveAfterMs: Infinity, freezeEvents: false, bfcache: true },
  webkit: { hiddenMedianMs: [900, 1100], intensiveAfterMs: Infinity, freezeEvents: false, bfcache: true },
}[ENGINE];

let broker;
let browser;
let page;

before(async () => {
  requirePkg();
  broker = await startBroker({ ttl: TTL });
  browser = await launch();
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

function intervals(ticks, hidden) {
  const out = [];
  for (let i = 1; i < ticks.length; i++) {
    if (ticks[i][1] === hidden && ticks[i - 1][1] === hidden) out.push(ticks[i][0] - ticks[i - 1][0]);
  }
  return out.sort((a, b) => a - b);
}
const median = (xs) => (xs.length ? xs[Math.floor(xs.length / 2)] : NaN);

let measured;

test(`${ENGINE}: a hidden page's chained timers, its lifecycle events, and the client keeps a token throughout`, { timeout: HIDDEN_MS + 90_000 }, async () => {
  await page.goto(`${broker.base}/lifecycle.html`);
  await page.waitForFunction(() => window.lc !== undefined, { message: "lifecycle page ready" });
  assert.equal(await page.evaluate(() => window.lc.start()), true);
  await sleep(4_000);
  const shownAt = await page.evaluate(() => window.lc.mark("hide"));
  await browser.hide(page);
  await sleep(HIDDEN_MS);
  await browser.show(page);
  const s = await page.waitForFunction(() => {
    const st = window.lc.state();
    return st.visibility === "visible" ? st : false;
  }, { timeoutMs: 10_000, message: "the page visible again" });
  await sleep(1_500);
  const st = await page.evaluate(() => window.lc.state());

  const vis = st.events.filter((e) => e.type === "visibilitychange").map((e) => `${e.state}@${e.at}`);
  const visible = intervals(st.ticks, 0);
  const hidden = intervals(st.ticks, 1);
  const tokensHidden = st.clientEvents.filter((e) => e.name === "token" && e.state === "hidden").length;
  measured = {
    engine: ENGINE, ua: (await page.evaluate(() => window.lc.support.userAgent)),
    visibilityChanges: vis, events: st.events.map((e) => `${e.type}${e.type === "visibilitychange" ? `:${e.state}` : ""}@${e.at}`).join(" "),
    visible: { n: visible.length, median: median(visible), max: visible.at(-1) },
    hidden: { n: hidden.length, median: median(hidden), p90: hidden[Math.floor(hidden.length * 0.9)], max: hidden.at(-1) },
    tokensWhileHidden: tokensHidden, gaps: st.gaps, clientEvents: st.clientEvents.map((e) => `${e.name}:${e.state[0]}@${e.at}`).join(" "),
    requestCount: st.requestCount, hideMarkAt: shownAt, visibleAgainAt: s.now,
  };
  console.log(`# ${ENGINE} hidden-page timers: ${JSON.stringify(measured)}`);
  const why = JSON.stringify(measured);

  // the page really went hidden, and came back
  assert.ok(vis.some((v) => v.startsWith("hidden")), `visibilitychange to hidden: ${why}`);
  assert.ok(vis.at(-1)?.startsWith("visible"), `visibilitychange back to visible: ${why}`);
  // visible, the 100 ms chain runs on time (the negative control for the hidden numbers)
  assert.ok(visible.length >= 30 && median(visible) < 150, `visible intervals: ${why}`);
  // hidden: throttled as measured (see EXPECTED), yet never frozen for longer than a token's margin
  assert.ok(hidden.length >= 5, `the chain kept running while hidden: ${why}`);
  const [lo, hi] = EXPECTED.hiddenMedianMs;
  assert.ok(median(hidden) >= lo && median(hidden) <= hi, `hidden median ${median(hidden)} ms outside [${lo}, ${hi}]: ${why}`);
  // Hidden long enough for Chromium's whole-minute stage: the page's own chain really went from
  // whole seconds to minute boundaries (so the client's timer below ran under that regime and
  // escaped it). The stage aligns to minute boundaries, so its first wait may be anything up to a
  // minute: count the chain's ticks instead — about one per second before the stage, a couple
  // after it — and see one wait well beyond a second.
  const hiddenSeconds = HIDDEN_MS / 1000;
  if (HIDDEN_MS >= EXPECTED.intensiveAfterMs + 70_000) {
    assert.ok(hidden.length < hiddenSeconds * 0.75, `the chain slowed to minute boundaries (${hidden.length} ticks in ${hiddenSeconds} s): ${why}`);
    assert.ok(hidden.at(-1) >= 5_000, `a chained timer waited for a minute boundary: ${why}`);
  } else {
    assert.ok(hidden.length >= hiddenSeconds * 0.8, `about one tick per second (${hidden.length} in ${hiddenSeconds} s): ${why}`);
    assert.ok(hidden.at(-1) < 5_000, `no timer of the chain waited long: ${why}`);
  }
  // the client: refreshed while hidden, never a lifetime without a new token, never without a
  // usable token, never expired
  assert.ok(tokensHidden >= Math.floor(HIDDEN_MS / 1000 / TTL) - 1, `refreshes while hidden: ${why}`);
  const tokenTimes = st.clientEvents.filter((e) => e.name === "token").map((e) => e.at);
  const longest = Math.max(...tokenTimes.slice(1).map((t, i) => t - tokenTimes[i]));
  measured.longestBetweenTokensMs = longest;
  assert.ok(longest < TTL * 1000, `${longest} ms between two tokens: ${why}`);
  assert.deepEqual(st.gaps, [], `polls without a usable token: ${why}`);
  assert.equal(st.clientEvents.filter((e) => e.name === "expired" || e.name === "error").length, 0, why);
  assert.equal(st.usable, true);
});

test(`${ENGINE}: back from the back/forward cache after the token expired, a fresh token comes at once`, { timeout: 90_000 }, async () => {
  const t0 = Date.now();
  const step = (what) => console.log(`# ${ENGINE} bfcache step at ${Date.now() - t0} ms: ${what}`);
  // The pages make the round trip themselves: this page follows its link to the away page, which
  // goes back (history.back()) after AWAY_MS, longer than a token lives (the cached page's timers
  // are frozen meanwhile). No WebDriver command runs during either navigation: CI saw this test
  // time out inside one WebDriver call on WebKit, twice, with the test's scripts running while a
  // page navigated. WebDriver's own Back is no better: it is one more wait inside the driver.
  const AWAY_MS = (TTL + 3) * 1000;
  const roundTrip = async () => {
    const before = await page.evaluate(() => window.lc.state());
    await page.evaluate((ms) => window.lc.leaveFor(ms), AWAY_MS);
    step(`leaving (client ${before.status}, ${before.requestCount} requests)`);
    await sleep(AWAY_MS + NAVIGATION_SETTLE_MS);
    step("polling");
    const st = await page.waitForFunction(() => {
      if (location.pathname !== "/lifecycle.html" || window.lc === undefined) return false;
      const s = window.lc.state();
      // a usable token; or a fresh load (no mark), which the assertions below report
      return s.usable || !s.events.some((e) => e.type === "mark:leave") ? s : false;
    }, { timeoutMs: 15_000, message: "back on the lifecycle page with a usable token" });
    step("back");
    return { before, st };
  };
  let { before, st } = await roundTrip();
  if (EXPECTED.bfcache && !st.events.some((e) => e.type === "mark:leave")) {
    // The browser loaded the page afresh instead of restoring it: its own choice (Firefox ESR
    // did so in 2 of ~20 runs on these machines, with no reason exposed). The client's behaviour after a
    // restore is what this test is about, so the round trip is made once more, from a started
    // page; a second fresh load fails below.
    step("loaded afresh, not restored: once more");
    await page.evaluate(() => window.lc.start());
    ({ before, st } = await roundTrip());
  }
  const shows = st.events.filter((e) => e.type === "pageshow");
  const show = shows.at(-1);
  const firstToken = st.clientEvents.find((e) => e.name === "token" && e.at >= (show?.at ?? Infinity));
  const fromCache = st.events.some((e) => e.type === "mark:leave");
  measured.bfcache = {
    fromCache, persisted: shows.map((e) => e.persisted), tokenAfterPageshowMs: firstToken ? firstToken.at - show.at : null,
    events: st.events.filter((e) => e.at >= before.now).map((e) => `${e.type}@${e.at}`).join(" "),
    clientEvents: st.clientEvents.filter((e) => e.at >= before.now).map((e) => `${e.name}@${e.at}`).join(" "),
    notRestoredReasons: st.notRestoredReasons,
  };
  console.log(`# ${ENGINE} back/forward cache: ${JSON.stringify(measured.bfcache)}`);
  assert.equal(fromCache, EXPECTED.bfcache, "the page came back from the back/forward cache");
  // the same page came back: pagehide, then pageshow with persisted = true ...
  assert.ok(st.events.some((e) => e.type === "pagehide" && e.at >= before.now), "pagehide before leaving");
  assert.equal(show?.persisted, true, "pageshow.persisted");
  // ... and the client, whose token expired meanwhile, fetched a new one on pageshow, not on a
  // timer (the refresh timer was due long before: it would have fired at once too, so the bound
  // is one broker round trip plus slack)
  assert.ok(firstToken, `a token event after pageshow: ${JSON.stringify(measured.bfcache)}`);
  assert.ok(firstToken.at - show.at < 1_000, `token ${firstToken.at - show.at} ms after pageshow`);
  assert.ok(st.requestCount > before.requestCount);
  await page.evaluate(() => window.lc.stop());
});

test(`${ENGINE}: the APIs the client uses or degrades without`, async () => {
  const support = await page.evaluate(() => window.lc.support);
  console.log(`# ${ENGINE} support: ${JSON.stringify(support)}`);
  assert.equal(support.webLocks, true);
  assert.equal(support.broadcastChannel, true);
  assert.equal(support.weakRef, true);
  assert.equal(support.finalizationRegistry, true);
  assert.equal(support.freezeEvents, EXPECTED.freezeEvents);
});

test(`${ENGINE}: no page error`, async () => {
  const msgs = await page.console();
  const bad = msgs.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, []);
});
