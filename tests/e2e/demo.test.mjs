// End-to-end test of the demo page (www/) as `make demo` serves it: the broker in dev mode with
// --www www --pkg pkg --vendor <Speech SDK browser bundle>, under its strict CSP, in headless
// Chromium. With 6-second tokens it
//   - waits through at least three refreshes and checks the dashboard's numbers (the client's
//     requestCount, refreshes) against the broker's own counters (/admin/stats);
//   - checks the storage audit reads zero everywhere;
//   - runs a recognition with the real Speech SDK (fake Speech endpoint) and sees the phrase;
//   - raises the TTL and starts a broker outage through the dashboard's dev controls, forces a
//     refresh, and sees errors and retries, then recovery, with no lapse of token coverage;
//   - counts securitypolicyviolation events (0), searches the console for every token issued,
//   - saves a screenshot to artifacts/demo.png (and to docs/demo.png with UPDATE_DOCS=1).
//
// Run from the repository root: node --test --test-concurrency=1 tests/e2e/

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import {
  ROOT, WWW_DIR, startBroker, launchChromium, collectConsole, isBrowserWebSocketLine, leakedIn,
  requirePkg, waitFor, sleep,
} from "./helpers.mjs";

const TTL = 6;
let broker;
let chromium;
let page;
let messages;
const tokens = new Set();

before(async () => {
  requirePkg();
  // As `make demo` runs it: --dev-entra, so the page signs in through its MSAL stand-in and every
  // broker request carries the user's Entra access token (--auth entra).
  // --relay too: the page holds relay tickets and the Speech SDK connects through the broker.
  broker = await startBroker({ www: WWW_DIR, ttl: TTL, extraArgs: ["--dev-entra", "--relay", "--relay-ticket-ttl", String(TTL)] });
  chromium = await launchChromium({ viewport: { width: 1360, height: 1000 } });
  page = await chromium.context.newPage();
  messages = collectConsole(page);
  // Counted by an init script (outside the page's CSP), independently of the page's own counter.
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__violations.push(`${e.violatedDirective} ${String(e.blockedURI).slice(0, 60)}`);
    });
  });
  // Every token the broker hands this page, to search the console for it later. Read on the way
  // through (a route), not from the finished response: the client reads bodies as a stream, and
  // Chromium does not always keep such a body for the debugger afterwards.
  await page.route("**/api/speech-token*", async (route) => {
    const response = await route.fetch();
    if (response.status() === 200) {
      try { const j = JSON.parse(await response.text()); if (j.token) tokens.add(j.token); } catch { /* not JSON */ }
    }
    await route.fulfill({ response });
  });
});

after(async () => {
  await chromium?.close();
  await broker?.stop();
  if (process.env.BROKER_LOG && broker) process.stderr.write(broker.log());
});

const text = (testid) => page.getByTestId(testid).textContent({ timeout: 5_000 });
const value = async (testid) => Number(await page.getByTestId(testid).getAttribute("data-value", { timeout: 5_000 }));

/** Reads a dashboard number and the broker's counter until both agree across one stats call. */
async function agreeWithBroker(testid, statKey, offset = 0) {
  let last;
  for (let i = 0; i < 20; i++) {
    const before = await value(testid);
    const stats = await broker.admin("/admin/stats");
    const after = await value(testid);
    last = { dashboard: [before, after], broker: stats[statKey] };
    if (before === after && before === stats[statKey] + offset) return before;
    await sleep(150);
  }
  assert.fail(`${testid} never matched the broker's ${statKey}${offset ? ` ${offset}` : ""}: ${JSON.stringify(last)}`);
}

test("the demo loads under the broker's CSP and shows a valid token in dev mode", { timeout: 60_000 }, async () => {
  await page.goto(`${broker.base}/`, { timeout: 20_000 });
  await page.waitForFunction(() => document.documentElement.dataset.ready === "true", null, { timeout: 20_000 });
  await waitFor(async () => (await text("status-badge")) === "valid", { timeoutMs: 15_000, message: "status valid" });
  assert.equal(await page.getByTestId("mode").getAttribute("data-mode"), "dev");
  assert.match(await text("where"), /^ws:\/\/127\.0\.0\.1:\d+\/relay\/speech\//);
  assert.equal(await page.getByTestId("relay-switch").getAttribute("data-relay"), "on");
  assert.match(await text("fingerprint"), /^sha256 [0-9a-f]{8}…$/);
  assert.match(await text("countdown"), /\d(\.\d)? s$/);
  assert.notEqual(await text("next-refresh"), "–");
  assert.equal(await page.getByTestId("dev-controls").isVisible(), true);
  // signed in: the broker authenticated the user (one audit line per issued token)
  assert.match(broker.log(), /(token|relay ticket) issued/);
});

test("through three refreshes the dashboard's numbers match the broker's own counters", { timeout: 90_000 }, async () => {
  await waitFor(async () => (await value("refreshes")) >= 3, { timeoutMs: 60_000, intervalMs: 500, message: "3 refreshes" });
  const requests = await agreeWithBroker("requests", "tokenRequests");
  assert.ok(requests >= 4, `requests ${requests}`);
  // refreshes = tokens received after the first; the broker counts every 200 answer
  await agreeWithBroker("refreshes", "tokenResponsesOk", -1);
  assert.equal(await text("status-badge"), "valid");
  assert.equal(await page.getByTestId("last-error").isVisible(), false);
  // the timeline draws every token window and every request; coverage never lapsed
  const tl = page.getByTestId("timeline");
  assert.ok(Number(await tl.getAttribute("data-tokens")) >= 2);
  assert.equal(Number(await tl.getAttribute("data-requests")), await value("requests"));
  assert.equal(await page.getByTestId("coverage").getAttribute("data-lapses"), "0", await text("coverage"));
  // the attached SpeechConfig got every token
  assert.ok(Number(await tl.getAttribute("data-speech")) >= 3);
  const log = await text("event-log");
  assert.match(log, /new token [0-9a-f]{8}/);
});

test("the storage audit reads zero everywhere", { timeout: 30_000 }, async () => {
  await waitFor(async () => (await text("storage-time")) !== "–", { message: "a scan" });
  assert.equal(await value("storage-total"), 0);
  for (const store of ["localStorage", "sessionStorage", "cookies", "indexedDB", "cacheStorage"]) {
    const row = page.locator(`tr[data-store="${store}"]`);
    assert.equal(await row.getAttribute("data-state"), "empty", store);
  }
  assert.equal(await text("storage-badge"), "nothing stored");
  // and independently of the page's own scan
  const direct = await page.evaluate(async () => ({
    local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
    idb: (await indexedDB.databases()).length, caches: (await caches.keys()).length,
  }));
  assert.deepEqual(direct, { local: 0, session: 0, cookie: "", idb: 0, caches: 0 });
});

test("Recognize runs the real Speech SDK via client.speechConfig() and shows the phrase", { timeout: 60_000 }, async () => {
  const before = (await broker.admin("/admin/stats")).speechConnections.length;
  await page.getByTestId("recognize").click();
  await waitFor(async () => (await page.getByTestId("speech-result").getAttribute("data-state")) === "recognized",
    { timeoutMs: 30_000, message: "recognized phrase" });
  assert.equal(await text("speech-text"), "Hello world.");
  const conns = (await broker.admin("/admin/stats")).speechConnections.slice(before);
  assert.ok(conns.length >= 1);
  assert.deepEqual([...new Set(conns.map((c) => c.verdict))], ["accepted"]);
  assert.ok(conns.some((c) => c.phrases >= 1));
  // the recognizer was detached and closed again; the page's SpeechConfig stays attached
  await waitFor(async () => (await text("attached")) === "1", { message: "one attached object" });
});

test("a broker outage (dev controls) shows errors and retries, then recovery without a lapse", { timeout: 90_000 }, async () => {
  // longer tokens first (through the dashboard's TTL control), so the outage fits in one lifetime
  await page.getByTestId("ttl-input").fill("30");
  await page.getByTestId("ttl-apply").click();
  await waitFor(async () => (await broker.admin("/admin/stats")).ttl === 30, { message: "ttl 30" });
  await waitFor(async () => {
    const c = await text("countdown");
    return /^\d+ s$/.test(c) && Number.parseFloat(c) >= 20;
  }, { timeoutMs: 15_000, message: "a 30-s token" });
  const errorsBefore = Number(await page.getByTestId("timeline").getAttribute("data-errors"));
  const refreshesBefore = await value("refreshes");

  await page.getByTestId("outage-input").fill("5");
  await page.getByTestId("outage-start").click();
  await waitFor(async () => (await broker.admin("/admin/stats")).outage === true, { message: "outage on" });
  await page.getByTestId("force-refresh").click();

  // errors (503, kind "http") and retries while the current token stays in service
  await waitFor(async () => (await page.getByTestId("last-error").getAttribute("data-kind")) === "http", { message: "an http error" });
  assert.match(await text("last-error"), /503/);
  await waitFor(async () => Number(await page.getByTestId("timeline").getAttribute("data-retries")) >= 2,
    { timeoutMs: 10_000, message: "two retries" });
  assert.equal(await text("status-badge"), "refreshing");
  assert.notEqual(await text("fingerprint"), "–", "the current token stays in service during the outage");

  // recovery once the outage ends
  await waitFor(async () => (await value("refreshes")) > refreshesBefore, { timeoutMs: 20_000, message: "recovery" });
  await waitFor(async () => (await text("status-badge")) === "valid", { message: "valid again" });
  const tl = page.getByTestId("timeline");
  assert.ok(Number(await tl.getAttribute("data-errors")) - errorsBefore >= 2, "errors drawn on the timeline");
  assert.equal(await page.getByTestId("coverage").getAttribute("data-lapses"), "0", await text("coverage"));
  assert.equal((await broker.admin("/admin/stats")).outage, false);
  await agreeWithBroker("requests", "tokenRequests");
  const log = await text("event-log");
  assert.match(log, /error.*http \(HTTP 503/);
  assert.match(log, /retrying the broker/);
});

test("no CSP violation, no token in the console; screenshot saved", { timeout: 60_000 }, async () => {
  assert.deepEqual(await page.evaluate(() => window.__violations), []);
  assert.equal(await value("csp-violations"), 0);
  assert.ok(tokens.size >= 4, `tokens seen: ${tokens.size}`);
  assert.deepEqual(leakedIn(messages, tokens).map((m) => `${m.type}: ${m.text.slice(0, 60)}`), []);
  // the only console errors are the browser's own network lines (503s of the simulated outage)
  const unexpected = messages.filter((m) => (m.type === "error" || m.type === "pageerror")
    && !isBrowserWebSocketLine(m) && !/^Failed to load resource: the server responded with a status of 503/.test(m.text));
  assert.deepEqual(unexpected.map((m) => `${m.type}: ${m.text.slice(0, 200)}`), []);
  // the page itself never mentions the token in its DOM either
  const html = await page.content();
  for (const t of tokens) assert.ok(!html.includes(t), "a token in the DOM");

  assert.equal(await page.getByTestId("last-error").getAttribute("data-recovered"), "true");
  await page.locator('#window-buttons button[data-window="60"]').click();
  await sleep(1500); // let the ring and the timeline settle after the recovery
  const artifacts = path.join(ROOT, "artifacts");
  mkdirSync(artifacts, { recursive: true });
  const shot = path.join(artifacts, "demo.png");
  await page.screenshot({ path: shot, fullPage: true });
  // The README's picture is refreshed on request only (UPDATE_DOCS=1), so test runs leave the
  // work tree clean.
  if (process.env.UPDATE_DOCS === "1") {
    mkdirSync(path.join(ROOT, "docs"), { recursive: true });
    copyFileSync(shot, path.join(ROOT, "docs/demo.png"));
  }
  // last, as it counts as a token request: without the user's access token the broker refuses
  const anonymous = await fetch(`${broker.base}/api/speech-token`);
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer /);
  // the relay switch: off (dev only) hands the page a plain Speech token for comparison
  await page.goto(`${broker.base}/?relay=off`, { timeout: 20_000 });
  await waitFor(async () => (await text("status-badge")) === "valid", { timeoutMs: 15_000, message: "status valid (relay off)" });
  assert.equal(await page.getByTestId("relay-switch").getAttribute("data-relay"), "off");
  assert.match(await text("where"), /^ws:\/\/127\.0\.0\.1:\d+\/speech\//);
});
