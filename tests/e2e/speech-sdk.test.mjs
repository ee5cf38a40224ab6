// The wasm client + the REAL Microsoft Speech SDK in headless Chromium, under the broker's strict
// CSP, against the broker's fake Speech service, with 4-second tokens and the service closing
// every connection after 2.5 s (so the SDK reconnects, presenting a token each time):
//   1. client.speechConfig(SpeechSDK) + recognizer + client.attach(recognizer): continuous
//      recognition across > 5 token lifetimes; every connection accepted, ≥ 5 distinct tokens,
//      phrases keep arriving until the end;
//   2. the same through SpeechConfig.fromEndpoint(url, client.tokenCredential()) (pull path);
//   3. negative control: one token fetched once and set once, same schedule → the service
//      records "expired" verdicts and recognition is canceled (the checks above can fail);
//   4. leak check over every page's console: no token in any message except Chromium's own
//      "WebSocket connection to … failed" lines (with a control showing the search finds tokens
//      there), and no securitypolicyviolation event.
//
// Audio: an AudioInputStream push stream fed 100 ms of PCM every 100 ms (real time). Unlike
// AudioConfig.fromWavFileInput (which sends ~5 s of audio, then only the WAV header on
// reconnects), it keeps sending audio across reconnects, so new phrases follow every reconnect.
//
// Run from the repository root: node --test --test-concurrency=1 tests/e2e/

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startBroker, launchChromium, collectConsole, isBrowserWebSocketLine, leakedIn, requirePkg,
} from "./helpers.mjs";

const TTL = 4; // seconds
const DROP_MS = 2500;
const RUN_MS = 24_000; // six token lifetimes

let broker;
let chromium;
const allConsole = []; // { test, type, text } of every page
const allTokens = new Set();
const allViolations = [];

before(async () => {
  requirePkg();
  broker = await startBroker({ ttl: TTL });
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await broker?.stop();
  if (process.env.BROKER_LOG && broker) process.stderr.write(broker.log());
});

async function runInPage(name, args) {
  await broker.admin("/admin/reset", {});
  await broker.admin("/admin/speech", { dropAfterMs: DROP_MS });
  const page = await chromium.context.newPage();
  const messages = collectConsole(page);
  try {
    await page.goto(`${broker.base}/speech-client.html`, { timeout: 20_000 });
    await page.waitForFunction(() => window.sc !== undefined, null, { timeout: 20_000 });
    assert.equal(await page.evaluate(() => window.sc.sdkLoaded), true, "SpeechSDK bundle loaded from /vendor/");
    const result = await page.evaluate((a) => window.sc.run(a), args);
    const tokens = await page.evaluate(() => window.sc.tokens());
    const violations = await page.evaluate(() => window.sc.violations);
    const stats = await broker.admin("/admin/stats");
    for (const t of tokens) allTokens.add(t);
    for (const m of messages) allConsole.push({ test: name, ...m });
    allViolations.push(...violations);
    return { result, tokens, violations, stats, messages };
  } finally {
    await page.close();
    await broker.admin("/admin/reset", {});
  }
}

function verdicts(stats) {
  const v = {};
  for (const c of stats.speechConnections) v[c.verdict] = (v[c.verdict] ?? 0) + 1;
  return v;
}

function summary(r, stats) {
  return JSON.stringify({
    phrases: r.phrases.length, lastPhraseAt: r.phrases.at(-1)?.at, canceled: r.canceled, events: r.events,
    errorKinds: r.errorKinds, lifetimes: r.lifetimes, requestCount: r.requestCount, credentialCalls: r.credentialCalls,
    verdicts: verdicts(stats), connections: stats.speechConnections.map((c) => [c.verdict, c.jti?.slice(0, 8), c.phrases]),
    tokenRequests: stats.tokenRequests, upstreamRequests: stats.upstreamRequests,
  });
}

/** The checks shared by the attach and credential paths. */
function assertKeptAlive(name, { result: r, stats, messages, violations, tokens }) {
  const why = `${name}: ${summary(r, stats)}`;
  const conns = stats.speechConnections;
  // the service saw a reconnect every ~2.5 s, all with valid tokens
  assert.ok(conns.length >= Math.floor(RUN_MS / DROP_MS) - 1, `reconnects: ${why}`);
  assert.deepEqual(Object.keys(verdicts(stats)), ["accepted"], `every connection accepted: ${why}`);
  // tokens really rotated: ≥ 5 distinct token ids presented over the run
  const jtis = new Set(conns.map((c) => c.jti));
  assert.ok(jtis.size >= 5, `≥ 5 distinct jti values: ${why}`);
  // every connection that lived its full 2.5 s got phrases (the last one may be cut by stop)
  assert.ok(conns.slice(0, -1).every((c) => c.phrases >= 1), `each connection recognized: ${why}`);
  // phrases keep arriving, including in the last third of the run
  assert.ok(r.phrases.length >= 10, why);
  assert.ok(r.phrases.every((p) => p.text === "Hello world."), why);
  const lastThird = r.phrases.filter((p) => p.at > (RUN_MS * 2) / 3);
  assert.ok(lastThird.length >= 3, `phrases in the last third: ${why}`);
  // no gap of more than one drop period (plus reconnect slack) without a phrase
  const times = [0, ...r.phrases.map((p) => p.at)];
  const maxGap = Math.max(...times.slice(1).map((t, i) => t - times[i]));
  assert.ok(maxGap < DROP_MS, `max gap between phrases ${maxGap} ms: ${why}`);
  assert.deepEqual(r.canceled, [], `never canceled: ${why}`);
  assert.equal(r.events.expired, 0, `client never expired: ${why}`);
  assert.equal(r.events.error, 0, `client never failed: ${why}`);
  // the client's own count matches the broker's (the only broker user in this page)
  assert.equal(r.requestCount, stats.tokenRequests, why);
  assert.ok(r.events.token >= 5, why);
  // Every refresh brought a new token: the broker replaces its cached token before any client's
  // refresh point (with equal margins clients were handed the same token back, twice as often).
  assert.equal(new Set(tokens).size, r.events.token, `each token event carried a new token: ${why}`);
  // no failed WebSocket at all (so no browser line with a token in it either)
  assert.deepEqual(messages.filter(isBrowserWebSocketLine).map((m) => m.text.slice(0, 40)), [], why);
  assert.deepEqual(violations, [], "no CSP violations");
}

test("attach(): continuous recognition across six 4-s token lifetimes with reconnects every 2.5 s", { timeout: 120_000 }, async () => {
  const out = await runInPage("attach", { mode: "attach", audio: "push", runMs: RUN_MS });
  console.log(`# attach: ${summary(out.result, out.stats)}`);
  assertKeptAlive("attach", out);
  // speechConfig() attached the config, and attach() the recognizer
  assert.equal(out.result.attachedCount, 2);
});

test("tokenCredential(): fromEndpoint(url, credential) pulls a fresh token on every connection", { timeout: 120_000 }, async () => {
  const out = await runInPage("credential", { mode: "credential", audio: "push", runMs: RUN_MS });
  console.log(`# credential: ${summary(out.result, out.stats)}`);
  assertKeptAlive("credential", out);
  // the SDK asked the credential once per connection (at least)
  assert.ok(out.result.credentialCalls >= out.stats.speechConnections.length, summary(out.result, out.stats));
  assert.equal(out.result.attachedCount, 0);
});

test("negative control: one token set once (no refresh) → expired verdicts and recognition is canceled", { timeout: 120_000 }, async () => {
  const runMs = 14_000;
  const out = await runInPage("static", { mode: "static", audio: "push", runMs });
  const { result: r, stats, messages } = out;
  const why = `static: ${summary(r, stats)}`;
  console.log(`# ${why}`);
  const v = verdicts(stats);
  assert.ok((v.accepted ?? 0) >= 1, `the token worked while fresh: ${why}`);
  assert.ok((v.expired ?? 0) >= 1, `the service recorded expired tokens: ${why}`);
  assert.equal(v["bad-signature"], undefined, why);
  assert.equal(new Set(stats.speechConnections.map((c) => c.jti)).size, 1, why);
  assert.ok(r.phrases.length >= 1, `phrases while the token was fresh: ${why}`);
  assert.ok(r.canceled.length >= 1, `recognition canceled: ${why}`);
  assert.equal(r.canceled[0].reason, "Error", why);
  assert.equal(r.canceled[0].statusCode, "1006", why);
  // nothing recognized after the cancellation, and nothing in the last third
  assert.ok(r.phrases.every((p) => p.at <= r.canceled[0].at), why);
  assert.deepEqual(r.phrases.filter((p) => p.at > (runMs * 2) / 3), [], why);
  // control for the leak check: Chromium's own failed-WebSocket lines do carry the token, and
  // the search used below finds it there
  const [token] = out.tokens;
  const wsLines = messages.filter(isBrowserWebSocketLine);
  assert.ok(wsLines.length >= 1, why);
  assert.ok(wsLines.some((m) => m.text.includes(token)), "the leak search can find a token in a console line");
});

test("leak check: no console message from the page or the module contains a token; no CSP violation", () => {
  assert.ok(allTokens.size >= 10, `tokens recorded: ${allTokens.size}`);
  assert.ok(allConsole.length >= 1, "console was collected");
  const leaks = leakedIn(allConsole, allTokens);
  assert.deepEqual(leaks.map((m) => `${m.test} ${m.type}: ${m.text.slice(0, 60)}…`), []);
  // and no error-level messages other than the browser's own WebSocket failure lines
  const otherErrors = allConsole.filter((m) => (m.type === "error" || m.type === "pageerror") && !isBrowserWebSocketLine(m));
  assert.deepEqual(otherErrors.map((m) => `${m.test} ${m.type}: ${m.text.slice(0, 200)}`), []);
  assert.deepEqual(allViolations, [], "securitypolicyviolation events");
});
