// A custom-domain endpoint WITHOUT a path (issue "Trust boundaries and the real Speech SDK",
// item 11): SDK 1.52 first sends `GET https://<host>:443/stt/speech/universal/v2?
// GenerateRedirectResponse=true` (no token) and connects to the URL the plain-text answer names.
// The broker's fake Speech service answers that probe as Azure does (pointing at itself); the
// custom-domain host `speech-custom.test` is mapped onto the broker by Playwright routing (the SDK
// forces https and port 443, which a loopback fake cannot listen on), and the page's CSP is
// bypassed for that one foreign origin. Negative control: when the probe is not answered, the SDK
// falls back to `wss://speech-custom.test/...` and recognition is canceled.
//   node --test tests/e2e/custom-domain.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startBroker, requirePkg, CHROMIUM, CHROMIUM_ARGS } from "./helpers.mjs";

const HOST = "speech-custom.test";
let broker;
let context;
let profile;

before(async () => {
  requirePkg();
  broker = await startBroker();
  profile = mkdtempSync(path.join(tmpdir(), "stb-custom-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, bypassCSP: true, timeout: 60_000,
  });
});

after(async () => {
  await context?.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  await broker?.stop();
});

async function recognize(answerProbe) {
  const probes = [];
  const page = await context.newPage();
  await page.route(`https://${HOST}/**`, async (route) => {
    const url = new URL(route.request().url());
    probes.push(url.pathname + url.search);
    if (!answerProbe) return route.fulfill({ status: 404, body: "", headers: { "access-control-allow-origin": "*" } });
    const response = await route.fetch({ url: broker.base + url.pathname + url.search });
    return route.fulfill({ response });
  });
  await page.goto(`${broker.base}/custom-domain.html`, { timeout: 20_000 });
  await page.waitForFunction(() => window.custom !== undefined, null, { timeout: 20_000 });
  const result = await page.evaluate((endpoint) => window.custom.recognize(endpoint), `https://${HOST}`);
  await page.close();
  return { result, probes };
}

test("an endpoint without a path: the SDK's probe is answered and recognition works", async () => {
  const { result, probes } = await recognize(true);
  assert.ok(
    probes.some((p) => p === "/stt/speech/universal/v2?GenerateRedirectResponse=true"),
    `the SDK probed: ${JSON.stringify(probes)}`,
  );
  assert.equal(result.text, "Hello world.", JSON.stringify(result));
});

test("negative control: an unanswered probe leaves the SDK on the unreachable host", async () => {
  const { result, probes } = await recognize(false);
  assert.ok(probes.length >= 1, "the SDK probed");
  assert.notEqual(result.text, "Hello world.", JSON.stringify(result));
});
