// Cross-tab single flight (shareAcrossTabs: Web Locks + BroadcastChannel) in the engine named by
// E2E_ENGINE (../webdriver.mjs): several windows of one browser (same origin), 6-second tokens —
// the scenario of ../tabs.test.mjs, shorter. Windows, not tabs: a background tab is a hidden
// page, whose timers every engine throttles (see lifecycle.mjs), and the polls here run every
// 100 ms.
//   1. TABS windows sharing make about one broker request per refresh cycle; alone, about TABS
//      times as many (each window fetches its first token itself, in both modes). No window ever polls `client.token` as undefined once it had one.
//   2. Without Web Locks (the page hides navigator.locks) the client fetches alone, with no error:
//      the documented degradation, proved in every engine.
//
// Run from the repository root:  E2E_ENGINE=firefox node --test tests/e2e/engines/tabs.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startBroker, requirePkg, sleep } from "../helpers.mjs";
import { ENGINE, launch } from "../webdriver.mjs";

const TABS = 3;
const TTL = 6;
const RUN_MS = 3 * TTL * 1000;
const MIN_CYCLE_MS = (TTL - 1.1 * (TTL / 2)) * 1000;

let broker;
let browser;
let pages = [];

before(async () => {
  requirePkg();
  broker = await startBroker({ ttl: TTL });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

/** Loads the tabs page in TABS windows (the first is the session's own), returns the pages. */
async function openTabs(n, query) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const page = pages[i] ?? await browser.newPage({ type: "window" });
    pages[i] = page;
    await page.goto(`${broker.base}/tabs.html?${query}`);
    await page.waitForFunction(() => window.tabs !== undefined, { message: "tabs page" });
    assert.equal(await page.evaluate(() => window.tabs.start()), true);
    // how many broker requests this window made to get its first token (0: a peer gave it)
    page.firstRequests = await page.evaluate(() => window.tabs.state().requestCount);
    out.push(page);
  }
  return out;
}

async function stopAll(list) {
  for (const p of list) await p.evaluate(() => window.tabs.stop()).catch(() => {});
}

async function run(share) {
  await broker.admin("/admin/reset", {});
  await broker.admin("/admin/ttl", { seconds: TTL });
  const list = await openTabs(TABS, `share=${share ? 1 : 0}`);
  try {
    // Opening windows takes seconds in some engines (longer than a refresh cycle here), so the
    // broker's count over the opening includes refreshes: count each window's own first fetch.
    const opened = list.map((p) => p.firstRequests);
    await broker.admin("/admin/reset", {});
    await broker.admin("/admin/ttl", { seconds: TTL });
    await sleep(RUN_MS);
    const requests = (await broker.admin("/admin/stats")).tokenRequests;
    for (const [i, p] of list.entries()) {
      const s = await p.evaluate(() => window.tabs.state());
      const vis = await p.evaluate(() => document.visibilityState);
      assert.equal(vis, "visible", `window ${i} is visible (its timers unthrottled)`);
      assert.equal(s.token, true, `window ${i} holds a token: ${JSON.stringify(s)}`);
      assert.deepEqual(s.gaps, [], `window ${i} never polled an undefined token: ${JSON.stringify(s)}`);
      assert.deepEqual(s.errors, [], `window ${i}: no errors`);
      const st = await p.evaluate(() => window.tabs.storage());
      assert.deepEqual(st, { local: 0, session: 0, cookies: "", idb: 0, caches: 0 }, "storage stays empty");
    }
    return { opened, requests };
  } finally {
    await stopAll(list);
  }
}

test(`${ENGINE}: ${TABS} windows sharing make about one broker request per refresh cycle; alone, about ${TABS}×`, { timeout: 120_000 }, async () => {
  const shared = await run(true);
  const alone = await run(false);
  const cycles = Math.max(Math.floor(RUN_MS / MIN_CYCLE_MS), Math.ceil(alone.requests / TABS));
  console.log(`# ${ENGINE}: ${TABS} windows, ${TTL} s tokens, ${RUN_MS / 1000} s (${cycles} refresh cycles): broker requests ` +
    `shared ${shared.requests} (first fetches per window ${shared.opened}), alone ${alone.requests} (${alone.opened})`);
  // Each window fetches its first token itself (where the audio goes — region, endpoint — comes
  // only from this tab's own broker answer); sharing starts with the refreshes.
  assert.deepEqual(shared.opened, Array(TABS).fill(1), "each window's first token is its own");
  assert.deepEqual(alone.opened, Array(TABS).fill(1));
  // Each window also asks its own broker once every 6 of its token lifetimes whatever its peers
  // share (docs/ARCHITECTURE.md, "Trust model"): with the opening phase, at most once per window.
  const ownRounds = TABS;
  assert.ok(shared.requests <= cycles + 2 + ownRounds, `shared: ${shared.requests} > ${cycles} cycles + 2 + ${ownRounds}`);
  assert.ok(shared.requests * 1.5 < alone.requests, `shared ${shared.requests} vs alone ${alone.requests}`);
  assert.ok(alone.requests >= TABS * (RUN_MS / TTL / 1000), `alone: ${alone.requests}`);
});

test(`${ENGINE}: without Web Locks the client fetches alone, with no error`, { timeout: 60_000 }, async () => {
  await broker.admin("/admin/reset", {});
  await broker.admin("/admin/ttl", { seconds: TTL });
  const list = await openTabs(2, "share=1&nolocks=1");
  try {
    for (const p of list) {
      const s = await p.evaluate(() => window.tabs.state());
      assert.equal(s.token, true);
      assert.deepEqual(s.errors, []);
      assert.equal(await p.evaluate(() => navigator.locks), null, "the page really has no Web Locks");
    }
    assert.equal((await broker.admin("/admin/stats")).tokenRequests, 2, "each window fetched for itself");
  } finally {
    await stopAll(list);
  }
});

test(`${ENGINE}: no page logged an error`, async () => {
  const bad = [];
  for (const p of pages) for (const m of await p.console()) if (m.type === "error" || m.type === "pageerror") bad.push(m);
  assert.deepEqual(bad, []);
});
