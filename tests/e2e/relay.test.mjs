// The browser holds no Azure credential: the broker relays the Speech SDK's WebSocket (--relay).
// The real Speech SDK in headless Chromium, through the relay, to the dev broker's fake Speech
// service, with 4-second relay tickets and the service closing every connection after 2.5 s:
//   1. attach(): continuous recognition across several ticket refreshes and server-initiated
//      reconnects; every upstream connection was accepted (the fake saw the broker's own token in
//      a header), phrases keep arriving;
//   2. negative control: one ticket fetched once and set once → once it expires, reconnects are
//      refused at the relay (401) and recognition is canceled;
//   3. leak scan: every credential the page ever held is a relay ticket; the upstream token (its
//      jti, as the fake records it) appears nowhere in the console, the network log, the DOM or
//      storage.
//
// Run from the repository root: node --test --test-concurrency=1 tests/e2e/relay.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startBroker, launchChromium, collectConsole, requirePkg } from "./helpers.mjs";

const TICKET_TTL = 4;
const DROP_MS = 2500;
const RUN_MS = 16_000;

let broker;
let chromium;
const pageText = []; // everything a page showed or sent: console, network, DOM, storage
const heldByPage = new Set();
const upstreamJtis = new Set();

before(async () => {
  requirePkg();
  broker = await startBroker({ extraArgs: ["--relay", "--relay-ticket-ttl", String(TICKET_TTL)] });
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await broker?.stop();
  if (process.env.BROKER_LOG && broker) process.stderr.write(broker.log());
});

async function runInPage(args) {
  await broker.admin("/admin/reset", {});
  await broker.admin("/admin/speech", { dropAfterMs: DROP_MS });
  const page = await chromium.context.newPage();
  const messages = collectConsole(page);
  page.on("request", (r) => pageText.push(r.url()));
  page.on("websocket", (ws) => {
    pageText.push(ws.url());
    ws.on("framesent", (f) => pageText.push(String(f.payload).slice(0, 2000)));
    ws.on("framereceived", (f) => pageText.push(String(f.payload).slice(0, 2000)));
  });
  page.on("response", async (r) => {
    if (!r.url().includes("/api/speech-token")) return;
    try { pageText.push(await r.text()); } catch { /* body gone */ }
  });
  try {
    await page.goto(`${broker.base}/speech-client.html`, { timeout: 20_000 });
    await page.waitForFunction(() => window.sc !== undefined, null, { timeout: 20_000 });
    const result = await page.evaluate((a) => window.sc.run(a), args);
    for (const t of await page.evaluate(() => window.sc.tokens())) heldByPage.add(t);
    pageText.push(await page.content());
    pageText.push(await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie));
    for (const m of messages) pageText.push(m.text);
    const stats = await broker.admin("/admin/stats");
    for (const c of stats.speechConnections) if (c.jti) upstreamJtis.add(c.jti);
    return { result, stats };
  } finally {
    await page.close();
  }
}

test("continuous recognition through the relay across ticket refreshes and reconnects", { timeout: 120_000 }, async () => {
  const { result: r, stats } = await runInPage({ mode: "attach", audio: "push", runMs: RUN_MS });
  const why = JSON.stringify({ phrases: r.phrases.length, canceled: r.canceled, events: r.events,
    conns: stats.speechConnections.map((c) => [c.verdict, c.phrases]), tokenRequests: stats.tokenRequests });
  const conns = stats.speechConnections;
  assert.ok(conns.length >= Math.floor(RUN_MS / DROP_MS) - 1, `server-initiated reconnects: ${why}`);
  assert.ok(conns.every((c) => c.verdict === "accepted"), `upstream accepted the broker's credential every time: ${why}`);
  assert.ok(r.events.token >= 3, `tickets refreshed: ${why}`);
  assert.ok(r.phrases.length >= 5 && r.phrases.every((p) => p.text === "Hello world."), why);
  assert.ok(r.phrases.some((p) => p.at > (RUN_MS * 2) / 3), `phrases until the end: ${why}`);
  assert.deepEqual(r.canceled, [], why);
  assert.equal(r.events.error, 0, why);
});

test("negative control: one ticket set once → refused at the relay after it expires", { timeout: 120_000 }, async () => {
  const { result: r, stats } = await runInPage({ mode: "static", audio: "push", runMs: 12_000 });
  const why = JSON.stringify({ phrases: r.phrases.length, canceled: r.canceled, conns: stats.speechConnections.length });
  assert.ok(r.canceled.length >= 1, `recognition canceled once the ticket expired: ${why}`);
  // refused upgrades never reached the fake Speech service: it saw only accepted connections
  assert.ok(stats.speechConnections.every((c) => c.verdict === "accepted"), why);
});

test("the page only ever held relay tickets; the upstream credential appears nowhere", () => {
  assert.ok(heldByPage.size >= 3);
  for (const t of heldByPage) assert.match(t, /^rt1\./, "a relay ticket, not a Speech token");
  assert.ok(upstreamJtis.size >= 1);
  const all = pageText.join("\n");
  // control: the scan finds what is there
  assert.ok(all.includes([...heldByPage][0]) || all.includes(encodeURIComponent([...heldByPage][0])), "the scan sees the tickets");
  for (const jti of upstreamJtis) assert.ok(!all.includes(jti), `upstream token ${jti.slice(0, 8)}… leaked to the page`);
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(all), "no JWT at all in the page's view");
});
