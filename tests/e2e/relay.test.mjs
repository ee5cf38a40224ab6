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
//      storage;
//   4. translation (TranslationRecognizer from client.speechTranslationConfig(SpeechSDK) as is,
//      and on the V1 translation path; continuous, across ticket refreshes and reconnects) and
//      synthesis (SpeechSynthesizer on the relay's tts path; again after the ticket expired and
//      the connection closed) through the relay: the fake service saw the broker's credential in
//      a header, never a ticket; negative controls: a tampered and an expired ticket are refused at the relay, the
//      SDK reports a cancel (not a hang), and the fake is never contacted;
//   5. upstream failures: the service closing mid-session with 1011, and refusing the upgrade
//      (the relay answers 502): the SDK cancels with a connection failure, no hang.
//
// Run from the repository root: node --test --test-concurrency=1 tests/e2e/relay.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
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

// --- translation, synthesis, upstream failures (pages/relay-services.mjs) ---

const servicesHeld = new Set();

async function services(fn, args, behaviour) {
  await broker.admin("/admin/reset", {});
  if (behaviour) await broker.admin("/admin/speech", behaviour);
  const page = await chromium.context.newPage();
  const messages = collectConsole(page);
  try {
    await page.goto(`${broker.base}/relay-services.html`, { timeout: 20_000 });
    await page.waitForFunction(() => window.rs !== undefined, null, { timeout: 20_000 });
    const result = await page.evaluate(([f, a]) => window.rs[f](a), [fn, args]);
    for (const t of await page.evaluate(() => window.rs.tokens())) servicesHeld.add(t);
    const stats = await broker.admin("/admin/stats");
    const conns = stats.speechConnections.map((c) => ({ verdict: c.verdict, path: c.path, service: c.service,
      credential: c.credential, ticket: c.ticket, to: c.to, status: c.status, phrases: c.phrases }));
    return { result, conns, why: JSON.stringify({ result, conns, errors: messages.filter((m) => m.type === "pageerror") }) };
  } finally {
    await page.close();
  }
}

/** Every connection the fake saw was upgraded for `service` on `path`, with the broker's credential in a header. */
function assertHeaderCredential(conns, service, path, why) {
  assert.ok(conns.length >= 1, `the fake service was reached: ${why}`);
  for (const c of conns) {
    assert.equal(c.service, service, why);
    assert.equal(c.path, path, why);
    assert.equal(c.verdict, "accepted", `the broker's own credential: ${why}`);
    assert.equal(c.credential, "header", `credential as a header, not in the URL: ${why}`);
    assert.equal(c.ticket, false, `no relay ticket upstream: ${why}`);
  }
}

test("recognizeOnce through the relay: client.speechConfig(SpeechSDK) unchanged", { timeout: 120_000 }, async () => {
  const { result: r, conns, why } = await services("recognizeOnce", {});
  assert.equal(r.outcome, "RecognizedSpeech", why);
  assert.equal(r.text, "Hello world.", why);
  assert.equal(r.endpointPath, "/relay/speech/recognition/conversation/cognitiveservices/v1", why);
  assertHeaderCredential(conns, "recognition", "/speech/recognition/conversation/cognitiveservices/v1", why);
});

test("translation through the relay: client.speechTranslationConfig(SpeechSDK) unchanged", { timeout: 120_000 }, async () => {
  const { result: r, conns, why } = await services("translate", { to: ["de", "fr"] });
  assert.equal(r.outcome, "TranslatedSpeech", why);
  assert.equal(r.text, "Hello world.", why);
  assert.deepEqual(r.translations, { de: "Hallo Welt.", fr: "Bonjour le monde." }, why);
  // the page pointed the SDK at the advertised (recognition) relay endpoint; the relay sent the
  // translation to the SDK's translation path
  assert.equal(r.endpointPath, "/relay/speech/recognition/conversation/cognitiveservices/v1", why);
  assertHeaderCredential(conns, "translation", "/stt/speech/universal/v2", why);
  assert.deepEqual(conns[0].to, ["de", "fr"], why);
});

test("translation through the relay on the V1 translation path", { timeout: 120_000 }, async () => {
  const { result: r, conns, why } = await services("translate", { to: ["de"], path: "/relay/speech/translation/cognitiveservices/v1" });
  assert.equal(r.outcome, "TranslatedSpeech", why);
  assert.deepEqual(r.translations, { de: "Hallo Welt." }, why);
  assertHeaderCredential(conns, "translation", "/speech/translation/cognitiveservices/v1", why);
});

test("synthesis through the relay yields the service's audio bytes", { timeout: 120_000 }, async () => {
  const { result: r, conns, why } = await services("synthesize", {});
  assert.equal(r.outcome, "SynthesizingAudioCompleted", why);
  assert.ok(r.bytes >= 16_000, `all audio frames arrived: ${why}`);
  assert.ok(r.synthesizing >= 1, why);
  assertHeaderCredential(conns, "synthesis", "/tts/cognitiveservices/websocket/v1", why);
  assert.equal(conns.reduce((n, c) => n + c.phrases, 0), 1, `one synthesis turn: ${why}`);
});

test("continuous translation through the relay across ticket refreshes and reconnects", { timeout: 120_000 }, async () => {
  const runMs = 16_000;
  // as the recognition test above: turns end (the SDK starts the next on the same connection)
  const { result: r, conns, why } = await services("translateContinuously", { runMs, to: ["de"] }, { dropAfterMs: DROP_MS });
  assert.ok(conns.length >= Math.floor(runMs / DROP_MS) - 1, `server-initiated reconnects: ${why}`);
  assert.ok(conns.slice(0, -1).every((c) => c.phrases >= 1), `each connection translated: ${why}`);
  assertHeaderCredential(conns, "translation", "/stt/speech/universal/v2", why);
  assert.ok(r.ticketEvents >= 3, `tickets refreshed: ${why}`);
  assert.ok(r.phrases.length >= 4 && r.phrases.every((p) => p.de === "Hallo Welt."), why);
  assert.ok(r.phrases.some((p) => p.at > (runMs * 2) / 3), `translations until the end: ${why}`);
  assert.deepEqual(r.canceled, [], why);
});

test("synthesis again after the ticket expired and the service closed the connection", { timeout: 120_000 }, async () => {
  const { result: r, conns, why } = await services("synthesize", { times: 2, gapMs: (TICKET_TTL + 1) * 1000 }, { dropAfterMs: 1000 });
  assert.deepEqual(r.runs.map((x) => x.outcome), ["SynthesizingAudioCompleted", "SynthesizingAudioCompleted"], why);
  assert.ok(r.runs.every((x) => x.bytes >= 16_000), why);
  assert.equal(conns.length, 2, `a new connection for the second text: ${why}`);
  assertHeaderCredential(conns, "synthesis", "/tts/cognitiveservices/websocket/v1", why);
});

test("negative controls: a tampered ticket (translation) and an expired one (synthesis) are refused at the relay", { timeout: 180_000 }, async () => {
  const t = await services("translate", { credential: "tampered", to: ["de"] });
  assert.equal(t.result.outcome, "Canceled", `canceled, not a hang: ${t.why}`);
  assert.equal(t.result.cancel?.code, "ConnectionFailure", t.why);
  assert.deepEqual(t.conns, [], `the fake service was never contacted: ${t.why}`);
  const s = await services("synthesize", { credential: "expired", waitMs: (TICKET_TTL + 1) * 1000 });
  assert.equal(s.result.outcome, "Canceled", `canceled, not a hang: ${s.why}`);
  assert.equal(s.result.cancel?.code, "ConnectionFailure", s.why);
  assert.deepEqual(s.conns, [], `the fake service was never contacted: ${s.why}`);
  // control: the same expired-ticket path with a fresh ticket works
  const ok = await services("synthesize", { credential: "fresh" });
  assert.equal(ok.result.outcome, "SynthesizingAudioCompleted", ok.why);
});

test("upstream closes mid-session with an error code: the SDK cancels with the service's code and reason", { timeout: 120_000 }, async () => {
  // 1003 (the service refuses the data): the SDK cancels with ConnectionFailure and the close
  // code and reason it got — through the relay as when connected directly
  const a = await services("recognizeUntilCanceled", {}, { dropAfterMs: 1500, closeCode: 1003, replyAfterAudioFrames: 100000 });
  assert.equal(a.result.outcome, "canceled", `not a hang: ${a.why}`);
  assert.equal(a.result.cancel.reason, "Error", a.why);
  assert.equal(a.result.cancel.code, "ConnectionFailure", a.why);
  assert.equal(a.result.cancel.wsCode, "1003", `the service's close code reached the SDK: ${a.why}`);
  assert.match(a.result.cancel.text, /^fake service failure websocket error code: 1003/, `and its reason: ${a.why}`);
  assertHeaderCredential(a.conns, "recognition", "/speech/recognition/conversation/cognitiveservices/v1", a.why);
  // 1011 (internal error): the SDK 1.52 cancels at once, with its own RuntimeError "Cannot send
  // on connection that is in Disconnected state" (the same when connected directly)
  const b = await services("recognizeUntilCanceled", {}, { dropAfterMs: 1500, closeCode: 1011, replyAfterAudioFrames: 100000 });
  assert.equal(b.result.outcome, "canceled", `not a hang: ${b.why}`);
  assert.equal(b.result.cancel.reason, "Error", b.why);
  assert.match(b.result.cancel.text, /Disconnected/, b.why);
  assert.equal(b.conns.length, 1, b.why);
});

test("upstream refuses the connection: the relay answers 502 and the SDK cancels", { timeout: 120_000 }, async () => {
  const rec = await services("recognizeUntilCanceled", {}, { refuseStatus: 503 });
  assert.equal(rec.result.outcome, "canceled", `not a hang: ${rec.why}`);
  assert.equal(rec.result.cancel.code, "ConnectionFailure", rec.why);
  assert.ok(rec.conns.length >= 1 && rec.conns.every((c) => c.status === 503 && c.credential === "header" && !c.ticket), rec.why);
  const syn = await services("synthesize", {}, { refuseStatus: 503 });
  assert.equal(syn.result.outcome, "Canceled", `not a hang: ${syn.why}`);
  assert.equal(syn.result.cancel?.code, "ConnectionFailure", syn.why);
  assert.ok(syn.conns.length >= 1 && syn.conns.every((c) => c.status === 503 && c.service === "synthesis"), syn.why);
});

/** A loopback stand-in for the regional STS: issueToken answers a JWT-shaped token. */
async function fakeSts() {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const server = http.createServer((req, res) => {
    if (req.method === "POST" && req.url === "/sts/v1.0/issueToken") {
      const iat = Math.floor(Date.now() / 1000);
      res.end(`${b64({ alg: "HS256", typ: "JWT" })}.${b64({ region: "westeurope", iat, exp: iat + 600, jti: "e2e-sts" })}.${"s".repeat(43)}`);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** The HTTP status a WebSocket upgrade to `url` gets (101, or the refusal's). */
function upgradeStatus(url) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers: { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": Buffer.from("0123456789abcdef").toString("base64") } });
    req.on("upgrade", (res, socket) => { socket.destroy(); resolve(res.statusCode); });
    req.on("response", (res) => { res.resume(); resolve(res.statusCode); });
    req.on("error", reject);
    req.end();
  });
}

test("upstream unreachable (key mode, --endpoint on a closed port): the relay answers 502 and the SDK cancels", { timeout: 180_000 }, async () => {
  // Whatever fails (a browser that died under load included), the broker and the fake STS are
  // stopped: a key-mode broker left running would keep the test process alive.
  let sts, key, page;
  try {
    sts = await fakeSts();
    key = await startBroker({
      mode: "key", env: { SPEECH_KEY: "e2e-key" },
      extraArgs: ["--region", "westeurope", "--sts-base", sts.url, "--relay", "--endpoint", "ws://127.0.0.1:9",
        "--auth", "none", "--allow-host", "127.0.0.1"],
    });
    page = await chromium.context.newPage();
    // the relay's own answer, seen from outside the browser (the WebSocket API hides it)
    const grant = await (await fetch(`${key.base}/api/speech-token`)).json();
    assert.match(grant.token, /^rt1\./);
    const relayUrl = grant.endpoint.replace(/^wss:/, "ws:").replace(/^ws:/, "http:") + `?language=en-US&Authorization=Bearer%20${encodeURIComponent(grant.token)}`;
    assert.equal(await upgradeStatus(relayUrl), 502);
    await page.goto(`${key.base}/relay-services.html`, { timeout: 20_000 });
    await page.waitForFunction(() => window.rs !== undefined, null, { timeout: 20_000 });
    const rec = await page.evaluate(() => window.rs.recognizeUntilCanceled({ plain: true }));
    const why = JSON.stringify(rec);
    assert.equal(rec.outcome, "canceled", `not a hang: ${why}`);
    assert.equal(rec.cancel.reason, "Error", why);
    assert.equal(rec.cancel.code, "ConnectionFailure", why);
    assert.equal(rec.cancel.statusCode, "1006", `the browser sees a failed connection: ${why}`);
    const syn = await page.evaluate(() => window.rs.synthesize({ plain: true, path: "/relay/tts/cognitiveservices/websocket/v1" }));
    assert.equal(syn.outcome, "Canceled", `not a hang: ${JSON.stringify(syn)}`);
    assert.equal(syn.cancel?.code, "ConnectionFailure", JSON.stringify(syn));
    for (const t of await page.evaluate(() => window.rs.tokens())) servicesHeld.add(t);
    // control: the relay did try the upstream (it logged the failure), it did not refuse the ticket
    assert.match(key.log(), /relay: upstream connect failed/);
  } finally {
    await page?.close().catch(() => {});
    try {
      await key?.stop();
    } finally {
      await sts?.close();
    }
  }
});

test("the translation and synthesis pages only held relay tickets", () => {
  assert.ok(servicesHeld.size >= 3, `${servicesHeld.size}`);
  for (const t of servicesHeld) assert.match(t, /^rt1\./);
});
