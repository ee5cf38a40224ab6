// The packed package's JS boundary in headless Chromium under the input plain-JS apps (and
// hostile pages) give it. Every mistake is a SpeechTokenError of kind "config" (or, for a
// proxy whose traps throw, at least never a raw exception from inside the module), and the
// module is intact afterwards: a client made before still refreshes, a new one still works.
// Found by an outside review: `on({})` twice froze the tab (the glue read a non-string's
// `.length` and handed the allocator a bogus block); a throwing options getter unwound through
// wasm frames and, repeated, broke every client on the page ("memory access out of bounds");
// a relative brokerUrl was refused in a worker.
//
// Run from the repository root: node --test tests/e2e/boundary.test.mjs

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
  return openPage(chromium, `${broker.base}/boundary.html`, "boundary");
}

/** Runs `call` on the page, failing (not hanging) if the page freezes. */
async function run(page, call, arg) {
  let watchdog;
  try {
    return await Promise.race([
      page.evaluate(([name, value]) => window.boundary[name](value), [call, arg]),
      new Promise((_, reject) => {
        watchdog = setTimeout(() => reject(new Error(`${call}(${arg}) did not return in 30 s: the page froze`)), 30_000);
      }),
    ]);
  } finally {
    clearTimeout(watchdog);
  }
}

test("on() with a non-string event is kind config every time, and the module stays intact", async () => {
  const { page } = await open();
  const { results, alive, freshAlive } = await run(page, "onWithNonStrings", 3);
  assert.equal(results.length, 24);
  for (const result of results) {
    assert.equal(result.kind, "config", JSON.stringify(result));
    assert.match(result.message, /unknown event/, JSON.stringify(result));
  }
  assert.equal(alive, true, "the client still gets tokens");
  assert.equal(freshAlive, true, "a new client still gets tokens");
  await page.close();
});

test("options whose getters or proxy traps throw are kind config, 200 times over, and harm no client", async () => {
  const { page } = await open();
  const { beforeToken, results, deviations, hasTrapAlive, afterAlive, beforeAlive } =
    await run(page, "throwingOptions", 200);
  assert.equal(beforeToken, true, "negative control: the client made first works");
  assert.equal(hasTrapAlive, true, "negative control: options whose `has` trap throws are still good options");
  assert.equal(results.length, 7);
  assert.deepEqual(deviations, [], "every round ends as the first did");
  for (const result of results) {
    assert.equal(result.name, "SpeechTokenError", JSON.stringify(result));
    assert.equal(result.kind, "config", JSON.stringify(result));
    assert.doesNotMatch(result.message, /boom/, "the app's own error text is not passed through");
  }
  assert.equal(afterAlive, true, "a new client still works");
  assert.equal(beforeAlive, "valid", "the client made before still refreshes");
  await page.close();
});

test("an option of a type JSON cannot hold (bigint, symbol, function, String object) is that option's config error", async () => {
  const { page } = await open();
  const results = await run(page, "oddValues");
  const expected = [/refreshMargin must be a number/, /method must be a string/,
    /shareAcrossTabs must be a boolean/, /brokerUrl must be a string/];
  assert.equal(results.length, expected.length);
  results.forEach((result, i) => {
    assert.equal(result.kind, "config", JSON.stringify(result));
    assert.match(result.message, expected[i], JSON.stringify(result));
  });
  await page.close();
});

test("attach() of a proxy whose traps throw never throws a raw error from inside the module", async () => {
  const { page } = await open();
  const { results, alive } = await run(page, "attachProxies", 100);
  for (const result of results) {
    assert.ok(result.returned || (result.name === "SpeechTokenError" && result.kind === "config"),
      JSON.stringify(result));
  }
  assert.equal(alive, true);
  await page.close();
});

test("a relative brokerUrl works in a module worker (resolved against the worker's location)", async () => {
  const { page } = await open();
  const result = await run(page, "worker");
  assert.deepEqual(result, { ok: true, status: "valid" });
  await page.close();
});
