// The browser client with an MSAL-style async `headers` provider against a broker running
// `--auth entra`, which validates the app user's Entra access token against a fake Entra ID
// (OpenID configuration + JWKS on loopback, RS256 keys generated for this run):
//   1. a valid user token → the client gets a Speech token, and the real Speech SDK recognizes
//      "Hello world." through the fake Speech service with it;
//   2. an expired user token / one for another audience / no token → the broker answers 401 with
//      WWW-Authenticate, the client rejects with kind "unauthorized", nothing is issued;
//   3. the user's access token appears nowhere in the page's console.
//
// Run from the repository root: node --test --test-concurrency=1 tests/e2e/broker-auth.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startBroker, launchChromium, collectConsole, requirePkg } from "./helpers.mjs";
import { startFakeEntra, API_APP_ID_URI, SCOPE } from "./fake-entra.mjs";

let entra;
let broker;
let chromium;
const minted = [];

before(async () => {
  requirePkg();
  entra = await startFakeEntra();
  broker = await startBroker({ extraArgs: entra.brokerArgs });
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await broker?.stop();
  await entra?.close();
  if (process.env.BROKER_LOG && broker) process.stderr.write(broker.log());
});

/** Opens the auth page with MSAL played by `acquire(request) → accessToken`. */
async function runPage(acquire, args) {
  const page = await chromium.context.newPage();
  const messages = collectConsole(page);
  const requests = [];
  await page.exposeFunction("msalAcquireTokenSilent", async (request) => {
    requests.push(request);
    const accessToken = acquire();
    if (accessToken) minted.push(accessToken);
    return { accessToken, scopes: request.scopes, tokenType: "Bearer" };
  });
  try {
    await page.goto(`${broker.base}/auth.html`, { timeout: 20_000 });
    await page.waitForFunction(() => window.auth !== undefined, null, { timeout: 20_000 });
    const result = await page.evaluate((a) => window.auth.run(a), args);
    return { result, messages, requests };
  } finally {
    await page.close();
  }
}

test("a valid user token gets a Speech token and the real SDK recognizes with it", async () => {
  await broker.admin("/admin/reset", {});
  const { result, messages, requests } = await runPage(() => entra.mint(), { recognize: true });
  assert.equal(result.error, undefined, JSON.stringify(result));
  assert.equal(result.ok, true);
  assert.deepEqual(result.recognized, { reason: "RecognizedSpeech", text: "Hello world." });
  assert.ok(result.providerCalls >= 1);
  assert.deepEqual(requests[0].scopes, [`${API_APP_ID_URI}/${SCOPE}`]);
  const stats = await broker.admin("/admin/stats");
  assert.ok(stats.tokenResponsesOk >= 1);
  assert.ok(stats.speechConnections.some((c) => c.verdict === "accepted" && c.phrases >= 1), JSON.stringify(stats));
  for (const t of minted) {
    for (const m of messages) assert.ok(!m.text.includes(t), `user token in the console: ${m.text.slice(0, 80)}`);
  }
  // one audit line per issued token: tenant + object ID + fingerprint, never the token
  assert.match(broker.log(), new RegExp(`token issued.*tid=${entra.tenant}|tid=${entra.tenant}.*token issued`));
  assert.ok(broker.log().includes(`oid=00000000-0000-0000-0000-00000000e2e1`), "audit line names the user");
});

for (const [name, acquire] of [
  ["an expired user token", () => entra.mint({ exp: Math.floor(Date.now() / 1000) - 600 })],
  ["a token for another audience", () => entra.mint({ aud: "api://someone-else" })],
  ["a token without the scope", () => entra.mint({ scp: "User.Read" })],
  ["no token at all", () => ""],
]) {
  test(`${name} is refused: 401, kind "unauthorized", nothing issued`, async () => {
    await broker.admin("/admin/reset", {});
    const { result } = await runPage(acquire, {});
    assert.equal(result.ok, undefined, JSON.stringify(result));
    assert.equal(result.error?.kind, "unauthorized", JSON.stringify(result));
    assert.equal(result.error?.status, 401);
    const stats = await broker.admin("/admin/stats");
    assert.equal(stats.tokenResponsesOk, 0);
    assert.equal(stats.upstreamRequests, 0);
    const r = await fetch(`${broker.base}/api/speech-token`, { headers: { authorization: `Bearer ${acquire()}` } });
    assert.equal(r.status, 401);
    assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
  });
}

test("the signing keys were fetched once for the whole run", () => {
  assert.equal(entra.keyFetches(), 1);
});
