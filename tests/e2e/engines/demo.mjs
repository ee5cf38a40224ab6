// The demo page (www/, as `make demo` serves it, under the broker's strict CSP) in the engine named
// by E2E_ENGINE (../webdriver.mjs), with 6-second tokens — the core of ../demo.test.mjs (which
// runs in Chromium through Playwright, with the outage scenario and the screenshot on top):
// a valid token in dev mode, three refreshes whose numbers match the broker's own counters with no
// lapse of coverage, the storage audit at zero, a recognition through the real Speech SDK, no CSP
// violation and no token in the console or the DOM.
//
// Run from the repository root:  E2E_ENGINE=firefox node --test tests/e2e/engines/demo.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { WWW_DIR, startBroker, requirePkg, waitFor, sleep, leakedIn } from "../helpers.mjs";
import { ENGINE, launch } from "../webdriver.mjs";

const TTL = 6;
let broker;
let browser;
let page;

before(async () => {
  requirePkg();
  broker = await startBroker({ www: WWW_DIR, ttl: TTL });
  browser = await launch();
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

// textContent, not WebDriver's element text: WebKitWebDriver returns "" for ellipsis-styled text.
const text = (id) => page.evaluate((i) => document.querySelector(`[data-testid="${i}"]`)?.textContent ?? null, id);
const attr = (id, name) => page.evaluate((i, n) => document.querySelector(`[data-testid="${i}"]`)?.getAttribute(n) ?? null, id, name);
const value = async (id) => Number(await attr(id, "data-value"));

async function agreeWithBroker(id, statKey, offset = 0) {
  let last;
  for (let i = 0; i < 20; i++) {
    const a = await value(id);
    const stats = await broker.admin("/admin/stats");
    const b = await value(id);
    last = { dashboard: [a, b], broker: stats[statKey] };
    if (a === b && a === stats[statKey] + offset) return a;
    await sleep(150);
  }
  assert.fail(`${id} never matched the broker's ${statKey}: ${JSON.stringify(last)}`);
}

test(`${ENGINE}: the demo loads under the broker's CSP and shows a valid token`, { timeout: 60_000 }, async () => {
  await page.goto(`${broker.base}/`);
  // counted from right after the load (WebDriver cannot run a script before the page's own)
  await page.evaluate(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective));
    // Every token the broker hands the page from now on (the refreshes), to search the console
    // and the DOM for later: the client calls window.fetch at each request.
    window.__tokens = [];
    window.__fetches = [];
    const orig = window.fetch.bind(window);
    window.fetch = async (...a) => {
      const r = await orig(...a);
      window.__fetches.push(`${String(a[0]?.url ?? a[0]).slice(0, 80)} ${r.status}`);
      if (String(a[0]?.url ?? a[0]).includes("/api/speech-token") && r.status === 200) {
        // read the copy before the client sees the answer: in Firefox a copy read afterwards
        // failed (the client aborts its request's controller once done: likely the cause)
        try { const j = JSON.parse(await r.clone().text()); if (j.token) window.__tokens.push(j.token); } catch { /* not JSON */ }
      }
      return r;
    };
  });
  await page.waitForFunction(() => document.documentElement.dataset.ready === "true", { message: "demo ready" });
  await waitFor(async () => (await text("status-badge")) === "valid", { timeoutMs: 15_000, message: "status valid" });
  assert.equal(await attr("mode", "data-mode"), "dev");
  assert.match(await text("where"), /^ws:\/\/127\.0\.0\.1:\d+\/speech\//);
  assert.match(await text("fingerprint"), /^sha256 [0-9a-f]{8}…$/);
});

test(`${ENGINE}: through three refreshes the dashboard's numbers match the broker's counters, no lapse`, { timeout: 90_000 }, async () => {
  await waitFor(async () => (await value("refreshes")) >= 3, { timeoutMs: 60_000, intervalMs: 500, message: "3 refreshes" });
  const requests = await agreeWithBroker("requests", "tokenRequests");
  assert.ok(requests >= 4, `requests ${requests}`);
  await agreeWithBroker("refreshes", "tokenResponsesOk", -1);
  assert.equal(await text("status-badge"), "valid");
  assert.equal(await attr("coverage", "data-lapses"), "0", await text("coverage"));
  assert.ok(Number(await attr("timeline", "data-speech")) >= 3, "the attached SpeechConfig got every token");
});

test(`${ENGINE}: the storage audit reads zero everywhere`, { timeout: 30_000 }, async () => {
  await waitFor(async () => (await text("storage-time")) !== "–", { message: "a scan" });
  assert.equal(await value("storage-total"), 0);
  const direct = await page.evaluate(async () => ({
    local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
    idb: indexedDB.databases ? (await indexedDB.databases()).length : 0, caches: (await caches.keys()).length,
  }));
  assert.deepEqual(direct, { local: 0, session: 0, cookie: "", idb: 0, caches: 0 });
});

test(`${ENGINE}: Recognize runs the real Speech SDK via client.speechConfig() and shows the phrase`, { timeout: 60_000 }, async () => {
  const before = (await broker.admin("/admin/stats")).speechConnections.length;
  await page.evaluate(() => document.querySelector('[data-testid="recognize"]').click());
  await waitFor(async () => (await attr("speech-result", "data-state")) === "recognized", { timeoutMs: 30_000, message: "recognized phrase" });
  assert.equal(await text("speech-text"), "Hello world.");
  const conns = (await broker.admin("/admin/stats")).speechConnections.slice(before);
  assert.ok(conns.length >= 1);
  assert.deepEqual([...new Set(conns.map((c) => c.verdict))], ["accepted"]);
});

test(`${ENGINE}: no CSP violation, no token in the console or the DOM`, { timeout: 30_000 }, async () => {
  assert.deepEqual(await page.evaluate(() => window.__violations), []);
  assert.equal(await value("csp-violations"), 0);
  const tokens = new Set(await page.evaluate(() => window.__tokens));
  assert.ok(tokens.size >= 3, `tokens seen: ${tokens.size}; fetches seen: ${JSON.stringify(await page.evaluate(() => window.__fetches))}`);
  const messages = await page.console();
  assert.deepEqual(leakedIn(messages, tokens).map((m) => m.text.slice(0, 60)), []);
  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad.map((m) => m.text.slice(0, 200)), []);
  const html = await page.evaluate(() => document.documentElement.outerHTML);
  for (const t of tokens) assert.ok(!html.includes(t), "a token in the DOM");
});
