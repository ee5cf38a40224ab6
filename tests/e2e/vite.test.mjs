// A frontend app as a user would build it: the packed npm tarball installed into a fresh Vite 7
// project, built with `vite build`, served (by the dev broker, under its strict CSP) and opened
// in headless Chromium, where it fetches a token from the broker. Both entry points:
//   "speech-token-client"          web target, `await init()` (Vite bundles the .wasm as an asset)
//   "speech-token-client/bundler"  bundler target, wasm imported as an ES module (vite-plugin-wasm)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";
import wasm from "vite-plugin-wasm";
import { startBroker, launchChromium } from "./helpers.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let work, tarball, chromium;

before(() => {
  work = mkdtempSync(path.join(tmpdir(), "vite-consumer-"));
  execFileSync("npm", ["pack", path.join(ROOT, "pkg"), "--pack-destination", work, "--silent"], { cwd: work, stdio: "pipe" });
  tarball = path.join(work, readdirSync(work).find((f) => f.endsWith(".tgz")));
});

after(async () => {
  await chromium?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const APPS = {
  web: `import init, { TokenClient } from "speech-token-client";
await init();
const client = new TokenClient({ brokerUrl: "/api/speech-token" });
window.__result = { token: await client.getToken(), region: client.region, status: client.status };`,
  bundler: `import { TokenClient } from "speech-token-client/bundler";
const client = new TokenClient({ brokerUrl: "/api/speech-token" });
window.__result = { token: await client.getToken(), region: client.region, status: client.status };`,
};

async function buildApp(name) {
  const app = path.join(work, name);
  mkdirSync(app, { recursive: true });
  writeFileSync(path.join(app, "package.json"), JSON.stringify({
    name: `consumer-${name}`, private: true, type: "module",
    dependencies: { "speech-token-client": `file:${tarball}` },
  }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], { cwd: app, stdio: "pipe" });
  writeFileSync(path.join(app, "index.html"),
    `<!doctype html><html><head><meta charset="utf-8"><title>${name}</title></head><body><script type="module" src="/main.js"></script></body></html>`);
  writeFileSync(path.join(app, "main.js"), APPS[name]);
  await build({
    root: app,
    logLevel: "warn",
    plugins: name === "bundler" ? [wasm()] : [],
    build: { target: "esnext", outDir: path.join(app, "dist"), emptyOutDir: true, modulePreload: { polyfill: false } },
  });
  return path.join(app, "dist");
}

for (const name of Object.keys(APPS)) {
  test(`a Vite app using the ${name} entry point builds and gets a token`, async () => {
    const dist = await buildApp(name);
    const assets = readdirSync(path.join(dist, "assets"));
    assert.ok(assets.some((f) => f.endsWith(".wasm")), `the wasm was bundled: ${assets}`);
    const broker = await startBroker({ www: dist });
    try {
      chromium ??= await launchChromium();
      const page = await chromium.context.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
      await page.goto(`${broker.base}/`);
      await page.waitForFunction(() => window.__result, null, { timeout: 20_000 });
      const result = await page.evaluate(() => window.__result);
      assert.equal(result.token.split(".").length, 3, "a dev JWT");
      assert.equal(result.region, "local");
      assert.equal(result.status, "valid");
      assert.deepEqual(errors.filter((e) => !/favicon|404/.test(e)), []);
      await page.close();
    } finally {
      await broker.stop();
    }
  });
}
