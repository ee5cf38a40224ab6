// Shared helpers for the end-to-end tests: start the reference broker (dev mode) and headless
// Chromium, talk to the broker's admin routes, collect a page's console, stop everything.
//
// BROKER_BIN overrides the broker binary (default target/release/speech-token-broker, else
// target/debug/…; built with cargo if neither exists). CHROMIUM overrides /usr/bin/chromium.
// Browsers are never downloaded: playwright-core drives the system Chromium.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const SDK_DIR = path.join(ROOT, "node_modules/microsoft-cognitiveservices-speech-sdk/distrib/browser");
export const PAGES_DIR = path.join(ROOT, "tests/e2e/pages");
export const PKG_DIR = path.join(ROOT, "pkg");
export const WWW_DIR = path.join(ROOT, "www");

export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export function brokerBinary() {
  if (process.env.BROKER_BIN) return path.resolve(ROOT, process.env.BROKER_BIN);
  for (const p of ["target/release/speech-token-broker", "target/debug/speech-token-broker"]) {
    if (existsSync(path.join(ROOT, p))) return path.join(ROOT, p);
  }
  const r = spawnSync("cargo", ["build", "--release", "-p", "speech-token-broker"], { cwd: ROOT, stdio: "inherit", timeout: 20 * 60_000 });
  const bin = path.join(ROOT, "target/release/speech-token-broker");
  if (r.status !== 0 || !existsSync(bin)) throw new Error("cannot build the broker (set BROKER_BIN)");
  return bin;
}

export function requirePkg() {
  assert.ok(existsSync(path.join(PKG_DIR, "speech_token_client.js")), "build the package first: bash scripts/build-pkg.sh");
  assert.ok(existsSync(path.join(SDK_DIR, "microsoft.cognitiveservices.speech.sdk.bundle.js")), "npm install first");
}

/**
 * Starts the broker (dev mode unless `mode` says otherwise; `env` adds environment variables,
 * e.g. SPEECH_KEY for key mode) on a free loopback port, serving `www` at `/`, the package at
 * `/pkg/` and the Speech SDK bundle at `/vendor/`. Resolves with a handle:
 * `{ child, base, log(), admin(path, body?), stop() }`.
 */
export function startBroker({ www = PAGES_DIR, ttl, extraArgs = [], mode = "dev", env = {} } = {}) {
  const bin = brokerBinary();
  const args = ["--mode", mode, "--listen", "127.0.0.1:0", "--rate-limit", "0",
    "--www", www, "--pkg", PKG_DIR, "--vendor", SDK_DIR, ...extraArgs];
  if (ttl !== undefined) args.push("--ttl", String(ttl));
  let log = "";
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd: ROOT, stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.BROKER_LOG ?? "info", ...env },
    });
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error("broker did not start in 20 s\n" + log)); }, 20_000);
    child.stderr.on("data", (d) => { log += d; });
    const early = (code) => { clearTimeout(timer); reject(new Error(`broker exited early (${code})\n${log}`)); };
    child.once("exit", early);
    const rl = readline.createInterface({ input: child.stdout });
    rl.once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (!m) { child.kill("SIGKILL"); reject(new Error(`unexpected first line: ${line}`)); return; }
      child.off("exit", early);
      const base = m[1];
      resolve({
        child,
        base,
        log: () => log,
        admin: (p, body) => admin(base, p, body),
        stop: () => stopChild(child),
      });
    });
  });
}

/** GET (no body) or POST JSON to an admin route; asserts 200 and returns the JSON answer. */
export async function admin(base, p, body) {
  const r = await fetch(base + p, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${p} answered ${r.status}`);
  return r.json();
}

export async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(t);
}

/**
 * Launches headless Chromium with a fresh profile. Resolves with `{ context, close() }`;
 * `close()` also removes the profile directory.
 */
export async function launchChromium({ extraArgs = [], viewport } = {}) {
  const userDataDir = mkdtempSync(path.join(tmpdir(), "stb-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...extraArgs],
      viewport: viewport ?? { width: 1280, height: 900 },
      timeout: 60_000,
    });
  } catch (e) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async close() {
      try { await context.close(); } catch { /* already gone */ }
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Records every console message and page error of `page`: `[{ type, text }]`. */
export function collectConsole(page) {
  const messages = [];
  page.on("console", (m) => messages.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => messages.push({ type: "pageerror", text: String(e?.stack ?? e) }));
  return messages;
}

/**
 * Opens `url` in a new page of `chromium` (from `launchChromium`) and waits until the page's
 * module has set `window[ready]`: `{ page, console }` (its console messages, `collectConsole`).
 */
export async function openPage(chromium, url, ready) {
  const page = await chromium.context.newPage();
  const console = collectConsole(page);
  await page.goto(url, { timeout: 20_000 });
  await page.waitForFunction((name) => window[name] !== undefined, ready, { timeout: 20_000 });
  return { page, console };
}

/**
 * Chromium itself logs failed WebSocket URLs — which carry the token in the query, as the SDK
 * puts `Authorization=Bearer%20<token>` there — as console errors "WebSocket connection to …
 * failed". Those lines come from the browser, not from any script on the page.
 */
export function isBrowserWebSocketLine(m) {
  return m.type === "error" && m.text.startsWith("WebSocket connection to ");
}

/** Console messages (not browser WebSocket lines) that contain any of `tokens` (raw or URL-encoded). */
export function leakedIn(messages, tokens) {
  const needles = [];
  for (const t of tokens) {
    needles.push(t);
    // a JWT's signature part alone, and the URL-encoded form, in case something reformats it
    const sig = t.split(".").pop();
    if (sig && sig.length >= 16) needles.push(sig);
    needles.push(encodeURIComponent(t));
  }
  return messages.filter((m) => !isBrowserWebSocketLine(m) && needles.some((n) => m.text.includes(n)));
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; returns the last value. */
export async function waitFor(fn, options = {}) {
  // an unknown option (say `timeout` for `timeoutMs`) would silently fall back to the default
  const unknown = Object.keys(options).filter((k) => !["timeoutMs", "intervalMs", "message"].includes(k));
  if (unknown.length) throw new TypeError(`waitFor: unknown option(s) ${unknown.join(", ")}`);
  const { timeoutMs = 10_000, intervalMs = 200, message = "condition" } = options;
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}; last value: ${JSON.stringify(last)}`);
}
