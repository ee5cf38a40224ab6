// Proves the broker's fake Speech service works with the REAL Microsoft Speech SDK in real
// headless Chromium, without the wasm client:
//   1. a fresh dev token + SpeechConfig.fromEndpoint + recognizeOnceAsync on a generated WAV
//      → RecognizedSpeech "Hello world.", and /admin/stats shows an accepted connection;
//   2. a service-side close (dropAfterMs, code 1000) during continuous recognition: the SDK
//      reconnects by itself and presents its token again;
//   3. negative control: a 2-second token used after 3 s → Canceled, only "expired" verdicts.
//
// Run from the repository root:  node --test tests/e2e/fake-speech.test.mjs
// BROKER_BIN overrides the broker binary (default target/debug/speech-token-broker; built with
// `cargo build -p speech-token-broker` if missing). CHROMIUM overrides /usr/bin/chromium.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BROKER_BIN = path.resolve(ROOT, process.env.BROKER_BIN ?? "target/debug/speech-token-broker");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SDK_DIR = path.join(ROOT, "node_modules/microsoft-cognitiveservices-speech-sdk/distrib/browser");
const PAGES_DIR = path.join(ROOT, "tests/e2e/pages");

let broker; // ChildProcess
let base; // http://127.0.0.1:<port>
let browser;
let context;
let userDataDir;
let brokerLog = "";

function ensureBinary() {
  if (existsSync(BROKER_BIN)) return;
  const r = spawnSync("cargo", ["build", "-p", "speech-token-broker"], { cwd: ROOT, stdio: "inherit", timeout: 20 * 60_000 });
  if (r.status !== 0 || !existsSync(BROKER_BIN)) {
    throw new Error(`broker binary missing at ${BROKER_BIN} (set BROKER_BIN or run cargo build -p speech-token-broker)`);
  }
}

function startBroker() {
  return new Promise((resolve, reject) => {
    const child = spawn(
      BROKER_BIN,
      ["--mode", "dev", "--listen", "127.0.0.1:0", "--rate-limit", "0", "--vendor", SDK_DIR, "--www", PAGES_DIR],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.BROKER_LOG ?? "info" } },
    );
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error("broker did not start in 20 s\n" + brokerLog)); }, 20_000);
    child.stderr.on("data", (d) => { brokerLog += d; });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`broker exited early (${code})\n${brokerLog}`)); });
    const rl = readline.createInterface({ input: child.stdout });
    rl.once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (!m) { child.kill("SIGKILL"); reject(new Error(`unexpected first line: ${line}`)); return; }
      child.removeAllListeners("exit");
      resolve({ child, url: m[1] });
    });
  });
}

async function admin(p, body) {
  const r = await fetch(base + p, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${p} answered ${r.status}`);
  return r.json();
}

async function openPage() {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}/sdk-raw.html`, { timeout: 20_000 });
  await page.waitForFunction(() => window.sdkRaw !== undefined, null, { timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.sdkRaw.sdkLoaded), true, "SpeechSDK bundle loaded from /vendor/");
  return { page, consoleErrors };
}

before(async () => {
  ensureBinary();
  assert.ok(existsSync(path.join(SDK_DIR, "microsoft.cognitiveservices.speech.sdk.bundle.js")), "npm install first");
  ({ child: broker, url: base } = await startBroker());
  userDataDir = mkdtempSync(path.join(tmpdir(), "stb-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    timeout: 60_000,
  });
  browser = context;
});

after(async () => {
  try { await browser?.close(); } catch { /* already gone */ }
  if (broker && broker.exitCode === null) {
    const exited = new Promise((r) => broker.once("exit", r));
    broker.kill("SIGTERM");
    const t = setTimeout(() => broker.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(t);
  }
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (process.env.BROKER_LOG) process.stderr.write(brokerLog);
});

test("real Speech SDK recognizes 'Hello world.' through the fake service with a fresh dev token", { timeout: 90_000 }, async () => {
  await admin("/admin/reset", {});
  const { page, consoleErrors } = await openPage();
  const result = await page.evaluate(async () => {
    const t = await window.sdkRaw.fetchToken();
    const r = await window.sdkRaw.recognize({ token: t.token, endpoint: t.endpoint });
    return { ...r, region: t.region, expiresIn: t.expiresIn, endpoint: t.endpoint, violations: window.sdkRaw.violations };
  });
  assert.equal(result.reason, "RecognizedSpeech", JSON.stringify(result));
  assert.equal(result.text, "Hello world.");
  assert.equal(result.region, "local");
  assert.match(result.endpoint, /^ws:\/\/127\.0\.0\.1:\d+\/speech\/recognition\/conversation\/cognitiveservices\/v1$/);
  assert.deepEqual(result.violations, [], "no CSP violations under the broker's strict policy");
  assert.deepEqual(consoleErrors, []);

  const stats = await admin("/admin/stats");
  const accepted = stats.speechConnections.filter((c) => c.verdict === "accepted");
  assert.ok(accepted.length >= 1, JSON.stringify(stats.speechConnections));
  assert.ok(accepted.some((c) => c.phrases >= 1), "the accepted connection got a phrase");
  assert.deepEqual(stats.speechConnections.filter((c) => c.verdict !== "accepted"), []);
  assert.equal(stats.upstreamRequests, 1);
  await page.close();
});

test("service-side close (dropAfterMs → code 1000): the SDK reconnects by itself and presents its token again", { timeout: 90_000 }, async () => {
  await admin("/admin/reset", {});
  await admin("/admin/speech", { dropAfterMs: 1500, replyAfterAudioFrames: 3 });
  try {
    const { page } = await openPage();
    const result = await page.evaluate(async () => {
      const t = await window.sdkRaw.fetchToken();
      return window.sdkRaw.continuous({ token: t.token, endpoint: t.endpoint, seconds: 20, runMs: 4000 });
    });
    const stats = await admin("/admin/stats");
    const conns = stats.speechConnections;
    assert.ok(conns.length >= 2, `reconnected after the close: ${JSON.stringify(conns)}`);
    assert.deepEqual([...new Set(conns.map((c) => c.verdict))], ["accepted"]);
    assert.equal(new Set(conns.map((c) => c.jti)).size, 1, "every connection carried the recognizer's token");
    assert.ok(conns[0].phrases >= 1, JSON.stringify(conns));
    assert.ok(result.texts.length >= 1 && result.texts.every((t) => t === "Hello world."), JSON.stringify(result));
    await page.close();
  } finally {
    await admin("/admin/reset", {});
  }
});

test("negative control: an expired token is refused (401 before upgrade) and recognition is Canceled", { timeout: 90_000 }, async () => {
  await admin("/admin/reset", {});
  await admin("/admin/ttl", { seconds: 2 });
  try {
    const { page } = await openPage();
    const result = await page.evaluate(async () => {
      const t = await window.sdkRaw.fetchToken();
      await window.sdkRaw.sleep(3000);
      return window.sdkRaw.recognize({ token: t.token, endpoint: t.endpoint });
    });
    assert.equal(result.reason, "Canceled", JSON.stringify(result));
    assert.equal(result.text, "");
    assert.equal(result.cancellation, "Error");
    assert.equal(result.statusCode, "1006", JSON.stringify(result));

    const stats = await admin("/admin/stats");
    assert.ok(stats.speechConnections.length >= 1, "the SDK tried to connect");
    assert.deepEqual([...new Set(stats.speechConnections.map((c) => c.verdict))], ["expired"]);
    assert.ok(stats.speechConnections.every((c) => c.phrases === 0));
    await page.close();
  } finally {
    await admin("/admin/ttl", { seconds: 600 });
  }
});
