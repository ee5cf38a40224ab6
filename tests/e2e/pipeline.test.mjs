// tokenCredential() under the real @azure/core-rest-pipeline (bearerTokenAuthenticationPolicy,
// which passes the request's abortSignal to getToken) in headless Chromium: an aborted pipeline
// request rejects at once with an AbortError instead of waiting for the (slowed) broker, and the
// shared broker request goes on for the other caller. Bundled with esbuild at test time.
//   node --test tests/e2e/pipeline.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ROOT, startBroker, launchChromium, requirePkg } from "./helpers.mjs";

let broker;
let chromium;
let www;

before(async () => {
  requirePkg();
  www = mkdtempSync(path.join(tmpdir(), "pipeline-www-"));
  execFileSync(path.join(ROOT, "node_modules/.bin/esbuild"), [
    path.join(ROOT, "tests/e2e/pipeline/entry.mjs"), "--bundle", "--format=esm", "--platform=browser",
    "--external:/pkg/*", `--outfile=${path.join(www, "pipeline.mjs")}`, "--log-level=warning",
  ], { cwd: ROOT, stdio: "inherit" });
  writeFileSync(path.join(www, "pipeline.html"),
    '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="/pipeline.mjs"></script>');
  broker = await startBroker({ www });
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await broker?.stop();
  if (www) rmSync(www, { recursive: true, force: true });
});

async function run(abortAfterMs) {
  await broker.admin("/admin/slow", { ms: 3000 });
  try {
    const page = await chromium.context.newPage();
    await page.goto(`${broker.base}/pipeline.html`, { timeout: 20_000 });
    await page.waitForFunction(() => window.pipeline !== undefined, null, { timeout: 20_000 });
    const result = await page.evaluate((ms) => window.pipeline.run(ms), abortAfterMs);
    await page.close();
    return result;
  } finally {
    await broker.admin("/admin/slow", { ms: 0 });
  }
}

test("an aborted pipeline request rejects at once; the shared request goes on", async () => {
  const r = await run(300);
  assert.equal(r.aborted.ok, false, JSON.stringify(r));
  assert.equal(r.aborted.name, "AbortError", JSON.stringify(r));
  assert.ok(r.aborted.ms < 1500, `rejected after ${r.aborted.ms} ms, not at once (the broker takes 3 s)`);
  assert.equal(r.other.ok, true, "the other caller still gets the token: " + JSON.stringify(r));
  assert.ok(r.other.ms >= 2500, "the other caller waited for the slowed broker (the request was shared, not cancelled)");
});

test("an already-aborted signal rejects without waiting", async () => {
  const r = await run(0);
  assert.equal(r.aborted.ok, false, JSON.stringify(r));
  assert.equal(r.aborted.name, "AbortError", JSON.stringify(r));
  assert.ok(r.aborted.ms < 1000, `rejected after ${r.aborted.ms} ms`);
});
