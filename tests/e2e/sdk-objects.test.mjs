// Closed objects of the REAL Speech SDK (1.52: its authorizationToken setter does not throw
// after close()) are detached: SpeechRecognizer, SpeechSynthesizer, TranslationRecognizer, in
// headless Chromium with the packed client and the dev broker. Run from the repository root:
//   node --test tests/e2e/sdk-objects.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startBroker, launchChromium, collectConsole, requirePkg } from "./helpers.mjs";

let broker;
let chromium;

before(async () => {
  requirePkg();
  broker = await startBroker();
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await broker?.stop();
});

test("closing real SDK objects detaches them; an open one keeps getting tokens", async () => {
  const page = await chromium.context.newPage();
  const console = collectConsole(page);
  await page.goto(`${broker.base}/sdk-objects.html`, { timeout: 20_000 });
  await page.waitForFunction(() => window.objects !== undefined, null, { timeout: 20_000 });
  const r = await page.evaluate(() => window.objects.closeThree());
  assert.equal(r.attachedBefore, 6, "four SDK objects and the two configs speechConfig() attached");
  assert.deepEqual(r.closed, ["ok", "ok", "ok"], "close() callbacks still run");
  assert.equal(r.attachedAfter, 3, "the three closed objects are detached: " + JSON.stringify(r));
  assert.deepEqual(
    r.detached.map((d) => d.reason).sort(),
    ["closed", "closed", "closed"],
    "one detach event per closed object: " + JSON.stringify(r.detached),
  );
  assert.equal(r.openGotIt, true, "the open recognizer (negative control) got the new token");
  assert.deepEqual(r.closedGotIt, [false, false, false], "closed objects got no new token");
  assert.match(r.secondClose, /disposed/, "a second close() still throws as the SDK's does");
  const errors = console.filter((m) => m.type === "pageerror");
  assert.deepEqual(errors, []);
  await page.close();
});
