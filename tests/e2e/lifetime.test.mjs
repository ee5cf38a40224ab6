// The packed package's lifetime in headless Chromium, as an app meets it (the wasm-bindgen suite
// covers the rest in tests/web_lifetime.rs):
//   1. `new TokenClient()` before `await init()` throws a clear error that says to call init()
//      (it was a bare "TypeError: Cannot read properties of undefined"); after init() it works.
//   2. `using client = new TokenClient(...)`: leaving the block disposes the client; a pending
//      getToken() rejects with kind "disposed", and so does a later call (no "null pointer
//      passed to rust").
//
// Run from the repository root: node --test tests/e2e/lifetime.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startBroker, launchChromium, openPage, requirePkg } from "./helpers.mjs";

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

function open() {
  return openPage(chromium, `${broker.base}/lifetime.html`, "lifetime");
}

test("new TokenClient() before init() says to call init(); after init() it works", async () => {
  const { page } = await open();
  const before = await page.evaluate(() => window.lifetime.beforeInit());
  assert.notEqual(before.constructed, true, "construction before init() must fail");
  assert.equal(before.name, "SpeechTokenError");
  assert.equal(before.kind, "config");
  assert.match(before.message, /await init\(\)/);
  const after = await page.evaluate(() => window.lifetime.afterInit());
  assert.deepEqual(after, { ok: true }, "after init() the same construction works");
  await page.close();
});

test("`using` disposes the client at the end of the block", async () => {
  const { page, console } = await open();
  const result = await page.evaluate(() => window.lifetime.usingBlock());
  assert.equal(result.status, "disposed");
  assert.equal(result.outcome.kind, "disposed", JSON.stringify(result.outcome));
  assert.equal(result.later.kind, "disposed", JSON.stringify(result.later));
  assert.deepEqual(console.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await page.close();
});
