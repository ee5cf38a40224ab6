// Works in every toolchain a frontend team uses (issue 18). For each toolchain, the packed npm
// tarball is installed into a fresh app (tests/toolchains/: the README quickstart, both entry
// points), built (or served) exactly with the README's recipe for that tool, and opened in
// headless Chromium, where it must get a token from the dev broker. Built apps are served by the
// broker under its strict Content-Security-Policy; the Vite dev server proxies /api to it.
//
// The recipe for every tool is "nothing": the package's "exports" conditions give toolchains that
// bundle `new URL("….wasm", import.meta.url)` (conditions "webpack", "production") the glue with a
// separate .wasm file, and everything else (esbuild, Rollup, Vite's dev server, Node) the glue
// with the wasm inlined. A negative control shows the failure the package removes: Vite's dev
// server given the separate-file glue 404s on the wasm (its dependency pre-bundling moves the
// glue away from it).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, startBroker, launchChromium, stopChild } from "./helpers.mjs";
import { consumerApp, packTarball } from "./consumer.mjs";

const APP_SRC = path.join(ROOT, "tests/toolchains");
const BIN = (name) => path.join(ROOT, "node_modules/.bin", name);
const ENTRIES = ["web", "bundler"];
const PAGE = { web: "index.html", bundler: "bundler.html" };
let work, app, chromium;

before(() => {
  let tarball;
  ({ work, tarball } = packTarball("toolchains"));
  app = consumerApp(work, tarball);
});

after(async () => {
  await chromium?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A fresh copy of the app sources in <app>/<tool>/ (resolves the package from <app>/node_modules). */
function sources(tool) {
  const dir = path.join(app, tool);
  cpSync(APP_SRC, dir, { recursive: true });
  return dir;
}

/** HTML pages for tools that bundle JS only (esbuild, Rollup, webpack): `<script src>` per entry. */
function writePages(dist, { module = true } = {}) {
  for (const e of ENTRIES) {
    writeFileSync(path.join(dist, PAGE[e]), `<!doctype html><html><head><meta charset="utf-8"><title>${e}</title></head>` +
      `<body><script ${module ? 'type="module"' : "defer"} src="./${e}.js"></script></body></html>`);
  }
}

/**
 * Opens `url` in Chromium and waits for the app's `window.__result`. Returns
 * `{ result, errors, notFound }`: console errors / page errors, and URLs that answered 404.
 */
async function openApp(url) {
  chromium ??= await launchChromium();
  const page = await chromium.context.newPage();
  const errors = [];
  const notFound = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() === 404) notFound.push(r.url()); });
  try {
    await page.goto(url);
    const end = Date.now() + 30_000;
    let result;
    while (Date.now() < end) {
      // A dev server may reload the page once (new optimized dependencies): poll, tolerating that.
      result = await page.evaluate(() => window.__result).catch(() => undefined);
      if (result) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return { result, errors, notFound };
  } finally {
    await page.close();
  }
}

function assertToken({ result, errors, notFound }, what) {
  assert.ok(result, `${what}: the app never finished (errors: ${errors.join(" | ")})`);
  assert.equal(result.error, undefined, `${what}: ${result.error}`);
  assert.equal(result.token.split(".").length, 3, `${what}: a dev JWT`);
  assert.equal(result.region, "local");
  assert.equal(result.status, "valid");
  assert.deepEqual(notFound.filter((u) => !u.endsWith("/favicon.ico")), [], `${what}: 404s`);
  assert.deepEqual(errors.filter((e) => !/favicon|404 \(Not Found\)/.test(e)), [], `${what}: console errors`);
}

/** Serves a built app with the dev broker and gets a token through each entry's page. */
async function runBuilt(dist, what, entries = ENTRIES) {
  const broker = await startBroker({ www: dist });
  try {
    for (const e of entries) assertToken(await openApp(`${broker.base}/${PAGE[e]}`), `${what}, ${e} entry`);
  } finally {
    await broker.stop();
  }
}

/** Files under `dir` (recursive) whose name ends with `ext`. */
function filesEndingWith(dir, ext) {
  return readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith(ext));
}

/** Whether the inlined wasm (its base64 marker) is in the built JS. */
function inlined(dist) {
  return filesEndingWith(dist, ".js").some((f) => readFileSync(path.join(dist, f), "utf8").includes("__stc_wasm_bytes"));
}

const vite = () => import("vite");

/** Starts `vite` (the dev server) on the app in `dir`, proxying /api to the broker. */
async function viteDev(dir, brokerBase, extra = {}) {
  const { createServer } = await vite();
  const server = await createServer({
    root: dir, configFile: false, logLevel: "warn", clearScreen: false,
    server: { host: "127.0.0.1", port: 0, strictPort: false, proxy: { "/api": brokerBase } },
    ...extra,
  });
  await server.listen();
  return server;
}

test("Vite 7 dev server (`vite`): both entries get a token, no configuration", { timeout: 180_000 }, async () => {
  const dir = sources("vite-dev");
  const broker = await startBroker();
  const server = await viteDev(dir, broker.base);
  try {
    const base = server.resolvedUrls.local[0].replace(/\/$/, "");
    for (const e of ENTRIES) assertToken(await openApp(`${base}/${PAGE[e]}`), `vite dev, ${e} entry`);
  } finally {
    await server.close();
    await broker.stop();
  }
});

test("negative control: Vite's dev server given the separate-.wasm glue 404s on the wasm", { timeout: 180_000 }, async () => {
  const dir = sources("vite-dev-control");
  const broker = await startBroker();
  // The "production" condition selects the glue that loads speech_token_client_bg.wasm next to
  // itself, as every entry did before issue 18; pre-bundling moves the glue to .vite/deps/.
  const server = await viteDev(dir, broker.base, { resolve: { conditions: ["module", "browser", "production"] } });
  try {
    const base = server.resolvedUrls.local[0].replace(/\/$/, "");
    const { result, notFound } = await openApp(`${base}/${PAGE.web}`);
    assert.ok(result?.error, `the control app must fail, got ${JSON.stringify(result)}`);
    assert.ok(notFound.some((u) => /\/node_modules\/\.vite\/deps\/speech_token_client_bg\.wasm/.test(u)),
      `expected the wasm 404 under .vite/deps, got ${notFound.join(", ")}`);
  } finally {
    await server.close();
    await broker.stop();
  }
});

test("Vite 7 build (`vite build`): both entries get a token, the wasm is a separate asset", { timeout: 180_000 }, async () => {
  const dir = sources("vite-build");
  const { build } = await vite();
  const dist = path.join(dir, "dist");
  await build({
    root: dir, configFile: false, logLevel: "warn",
    // A two-page app (one page per entry point): the only configuration, and it is the app's.
    build: { outDir: dist, emptyOutDir: true, rollupOptions: { input: { index: path.join(dir, "index.html"), bundler: path.join(dir, "bundler.html") } } },
  });
  assert.ok(filesEndingWith(dist, ".wasm").length > 0, "the wasm was emitted as a file");
  assert.ok(!inlined(dist), "the separate-.wasm glue was used");
  await runBuilt(dist, "vite build");
});

test("webpack 5 (`webpack --mode production`): both entries get a token, no configuration", { timeout: 180_000 }, async () => {
  const dir = sources("webpack");
  const { default: webpack } = await import("webpack");
  const dist = path.join(dir, "dist");
  const stats = await new Promise((resolve, reject) => {
    // What `webpack --mode production --entry ./web.js` does, with a second entry for /bundler.
    webpack({
      mode: "production", context: dir,
      entry: { web: "./web.js", bundler: "./bundler.js" },
      output: { path: dist, filename: "[name].js", clean: true },
    }, (err, s) => (err ? reject(err) : resolve(s)));
  });
  assert.ok(!stats.hasErrors(), stats.toString({ all: false, errors: true }));
  writePages(dist, { module: false });
  assert.ok(filesEndingWith(dist, ".wasm").length > 0, "the wasm was emitted as a file");
  assert.ok(!inlined(dist), "the separate-.wasm glue was used");
  await runBuilt(dist, "webpack");
});

test("esbuild (`esbuild --bundle --format=esm`): both entries get a token, no configuration", { timeout: 180_000 }, async () => {
  const dir = sources("esbuild");
  const dist = path.join(dir, "dist");
  // The README recipe, as a command.
  execFileSync(BIN("esbuild"), ["web.js", "bundler.js", "--bundle", "--format=esm", `--outdir=${dist}`, "--log-level=warning"], { cwd: dir, stdio: "pipe" });
  writePages(dist);
  assert.ok(inlined(dist), "the inline glue was used");
  await runBuilt(dist, "esbuild");
});

test("Rollup 4 (+ @rollup/plugin-node-resolve): both entries get a token, no configuration", { timeout: 180_000 }, async () => {
  const dir = sources("rollup");
  const dist = path.join(dir, "dist");
  // The README recipe: rollup.config.mjs with the node-resolve plugin every Rollup app has.
  writeFileSync(path.join(dir, "rollup.config.mjs"), `import { nodeResolve } from "@rollup/plugin-node-resolve";
export default {
  input: { web: "web.js", bundler: "bundler.js" },
  output: { dir: "dist", format: "es" },
  plugins: [nodeResolve({ browser: true })],
};
`);
  // The app's devDependency on the plugin: the repository's copy, linked.
  const plugin = path.join(app, "node_modules/@rollup/plugin-node-resolve");
  if (!existsSync(plugin)) {
    mkdirSync(path.dirname(plugin), { recursive: true });
    symlinkSync(path.join(ROOT, "node_modules/@rollup/plugin-node-resolve"), plugin);
  }
  execFileSync(BIN("rollup"), ["-c", "--silent"], { cwd: dir, stdio: "pipe" });
  writePages(dist);
  assert.ok(inlined(dist), "the inline glue was used");
  await runBuilt(dist, "rollup");
});

test("Parcel 2 (`parcel build index.html`): the web entry gets a token, no configuration", { timeout: 300_000 }, async () => {
  const dir = sources("parcel");
  const dist = path.join(dir, "dist");
  const child = spawn(BIN("parcel"), ["build", "index.html", "--dist-dir", dist, "--cache-dir", path.join(work, "parcel-cache"), "--no-source-maps", "--log-level", "warn"], {
    cwd: dir, stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const code = await new Promise((r) => child.once("exit", r));
  await stopChild(child);
  assert.equal(code, 0, `parcel build failed:\n${log}`);
  assert.ok(filesEndingWith(dist, ".wasm").length > 0, "the wasm was emitted as a file");
  await runBuilt(dist, "parcel", ["web"]);
});
