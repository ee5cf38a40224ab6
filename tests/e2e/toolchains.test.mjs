// Works in every toolchain a frontend team uses (issue 18). For each toolchain, the packed npm
// tarball is installed into a fresh app (tests/toolchains/: the README quickstart, both entry
// points), built (or served) exactly with the README's recipe for that tool, and opened in
// headless Chromium, where it must get a token from the dev broker. Built apps are served by the
// broker under its strict Content-Security-Policy; the Vite dev server proxies /api to it.
//
// No tool needs configuration for the package: its "exports" conditions give toolchains that
// bundle `new URL("….wasm", import.meta.url)` (conditions "webpack", "production") the glue with a
// separate .wasm file, and everything else (esbuild, Rollup, Vite's dev server, Node) the glue
// with the wasm inlined; Parcel (which ignores "exports" by default) reads "module", the inline
// glue too. Two optional recipes (esbuild, Rollup) get the smaller separate-.wasm glue through the
// "production" condition. A negative control shows the failure the package removes: Vite's dev server given the
// separate-file glue cannot load the wasm (dependency pre-bundling moves the glue to .vite/deps/,
// where the wasm is not; Vite answers with its index.html).

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

/** The app's devDependency on a build plugin: the repository's copy, linked into the app. */
function linkDevDependency(name) {
  const target = path.join(app, "node_modules", name);
  if (existsSync(target)) return;
  mkdirSync(path.dirname(target), { recursive: true });
  symlinkSync(path.join(ROOT, "node_modules", name), target);
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
 * `{ result, errors, notFound, wasm }`: console errors / page errors, URLs that answered 404, and
 * every .wasm response (`{ url, status, type }`).
 */
async function openApp(url) {
  chromium ??= await launchChromium();
  const page = await chromium.context.newPage();
  const errors = [];
  const notFound = [];
  const wasm = [];
  page.on("response", (r) => {
    if (/\.wasm(\?|$)/.test(r.url())) wasm.push({ url: r.url(), status: r.status(), type: r.headers()["content-type"] ?? "" });
  });
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
    return { result, errors, notFound, wasm };
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

/** Whether the wasm is inlined in the built JS (its base64 form; minifiers keep string literals). */
function inlined(dist) {
  const wasm64 = readFileSync(path.join(ROOT, "pkg/speech_token_client_bg.wasm")).toString("base64").slice(0, 400);
  return filesEndingWith(dist, ".js").some((f) => readFileSync(path.join(dist, f), "utf8").includes(wasm64));
}

const vite = () => import("vite");

/** Toolchains tested here and their entry points, as the README's install table must list them. */
const TESTED = new Map();

/** A toolchain test: `name` is the README table's first column; `entries` the entry points it covers. */
function tool(name, entries, recipe, fn) {
  TESTED.set(name, entries);
  test(`${name} (${recipe}): ${entries.join(" and ")} ${entries.length > 1 ? "entries get" : "entry gets"} a token`, { timeout: 300_000 }, fn);
}

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

tool("Vite 7 dev server", ENTRIES, "`vite`", async () => {
  const dir = sources("vite-dev");
  const broker = await startBroker();
  const server = await viteDev(dir, broker.base);
  try {
    const base = server.resolvedUrls.local[0].replace(/\/$/, "");
    for (const e of ENTRIES) {
      const run = await openApp(`${base}/${PAGE[e]}`);
      assertToken(run, `vite dev, ${e} entry`);
      assert.deepEqual(run.wasm, [], "no .wasm was fetched: the inline glue was used");
    }
  } finally {
    await server.close();
    await broker.stop();
  }
});

test("negative control: Vite's dev server given the separate-.wasm glue cannot load the wasm (the issue-18 failure)", { timeout: 180_000 }, async () => {
  const dir = sources("vite-dev-control");
  const broker = await startBroker();
  // The "production" condition selects the glue that loads speech_token_client_bg.wasm next to
  // itself, as every entry did before issue 18; pre-bundling moves the glue to .vite/deps/.
  const server = await viteDev(dir, broker.base, { resolve: { conditions: ["module", "browser", "production"] } });
  try {
    const base = server.resolvedUrls.local[0].replace(/\/$/, "");
    const { result, wasm } = await openApp(`${base}/${PAGE.web}`);
    assert.ok(result?.error, `the control app must fail, got ${JSON.stringify(result)}`);
    // Vite answers the missing file with its index.html (SPA fallback) rather than a 404.
    const bad = wasm.find((r) => /\/node_modules\/\.vite\/deps\/speech_token_client_bg\.wasm/.test(r.url));
    assert.ok(bad && (bad.status === 404 || !/application\/wasm/.test(bad.type)), `the wasm was looked for under .vite/deps: ${JSON.stringify(wasm)}`);
    assert.match(result.error, /CompileError|404|magic word/);
  } finally {
    await server.close();
    await broker.stop();
  }
});

tool("Vite 7 build", ENTRIES, "`vite build`, the wasm a separate asset", async () => {
  const dir = sources("vite-build");
  const dist = path.join(dir, "dist");
  // A two-page app (one page per entry point): the only configuration, and it is the app's.
  writeFileSync(path.join(dir, "vite.config.mjs"), `export default {
  build: { rollupOptions: { input: { index: "index.html", bundler: "bundler.html" } } },
};
`);
  // The CLI in its own process, as an app runs it (it sets NODE_ENV=production, hence the
  // "production" condition; this test process has run Vite's dev server already).
  const env = { ...process.env };
  delete env.NODE_ENV;
  execFileSync(BIN("vite"), ["build", "--logLevel", "warn"], { cwd: dir, stdio: "pipe", env });
  assert.ok(filesEndingWith(dist, ".wasm").length > 0, "the wasm was emitted as a file");
  assert.ok(!inlined(dist), "the separate-.wasm glue was used");
  await runBuilt(dist, "vite build");
});

tool("webpack 5", ENTRIES, "`webpack --mode production`, the wasm a separate asset", async () => {
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

tool("esbuild", ENTRIES, "`esbuild --bundle --format=esm`, the wasm inlined", async () => {
  const dir = sources("esbuild");
  const dist = path.join(dir, "dist");
  // The README recipe, as a command.
  execFileSync(BIN("esbuild"), ["web.js", "bundler.js", "--bundle", "--format=esm", `--outdir=${dist}`, "--log-level=warning"], { cwd: dir, stdio: "pipe" });
  writePages(dist);
  assert.ok(inlined(dist), "the inline glue was used");
  await runBuilt(dist, "esbuild");
});

tool("Rollup 4", ENTRIES, "@rollup/plugin-node-resolve, the wasm inlined", async () => {
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
  linkDevDependency("@rollup/plugin-node-resolve");
  execFileSync(BIN("rollup"), ["-c", "--silent"], { cwd: dir, stdio: "pipe" });
  writePages(dist);
  assert.ok(inlined(dist), "the inline glue was used");
  await runBuilt(dist, "rollup");
});

// Optional, smaller (the wasm as a separate file instead of inlined, -16 KB gzip): the README's
// recipes for esbuild and Rollup with the "production" condition.
tool("esbuild, separate .wasm", ENTRIES, "`--conditions=production`, the wasm copied next to the bundle", async () => {
  const dir = sources("esbuild-separate");
  const dist = path.join(dir, "dist");
  execFileSync(BIN("esbuild"), ["web.js", "bundler.js", "--bundle", "--format=esm", "--conditions=production", `--outdir=${dist}`, "--log-level=warning"], { cwd: dir, stdio: "pipe" });
  cpSync(path.join(app, "node_modules/speech-token-client/speech_token_client_bg.wasm"), path.join(dist, "speech_token_client_bg.wasm"));
  writePages(dist);
  assert.ok(!inlined(dist), "the separate-.wasm glue was used");
  await runBuilt(dist, "esbuild, separate .wasm");
});

tool("Rollup 4, separate .wasm", ENTRIES, "exportConditions production + @web/rollup-plugin-import-meta-assets", async () => {
  const dir = sources("rollup-separate");
  const dist = path.join(dir, "dist");
  writeFileSync(path.join(dir, "rollup.config.mjs"), `import { nodeResolve } from "@rollup/plugin-node-resolve";
import { importMetaAssets } from "@web/rollup-plugin-import-meta-assets";
export default {
  input: { web: "web.js", bundler: "bundler.js" },
  output: { dir: "dist", format: "es" },
  plugins: [nodeResolve({ browser: true, exportConditions: ["production"] }), importMetaAssets()],
};
`);
  linkDevDependency("@rollup/plugin-node-resolve");
  linkDevDependency("@web/rollup-plugin-import-meta-assets");
  execFileSync(BIN("rollup"), ["-c", "--silent"], { cwd: dir, stdio: "pipe" });
  writePages(dist);
  assert.ok(filesEndingWith(dist, ".wasm").length > 0, "the wasm was emitted as a file");
  assert.ok(!inlined(dist), "the separate-.wasm glue was used");
  await runBuilt(dist, "rollup, separate .wasm");
});

tool("Parcel 2", ENTRIES, "`parcel build index.html`, the wasm inlined", async () => {
  const dir = sources("parcel");
  const dist = path.join(dir, "dist");
  const child = spawn(BIN("parcel"), ["build", "index.html", "bundler.html", "--dist-dir", dist, "--cache-dir", path.join(work, "parcel-cache"), "--no-source-maps", "--log-level", "warn"], {
    cwd: dir, stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const code = await new Promise((r) => child.once("exit", r));
  await stopChild(child);
  assert.equal(code, 0, `parcel build failed:\n${log}`);
  // Parcel ignores "exports" unless the app enables packageExports: it reads "module" (and
  // bundler/package.json), the inline glue. (With a separate .wasm, Parcel 2.16 adds an inline <script type="importmap">, which a
  // strict Content-Security-Policy blocks.)
  assert.ok(inlined(dist), "the inline glue was used");
  await runBuilt(dist, "parcel");
});

test("README: the install table's \"tested\" marks are exactly the toolchains and entries tested here", () => {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const install = readme.slice(readme.indexOf("## Install"), readme.indexOf("## Quickstart"));
  const rows = install.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| toolchain"))
    .map((l) => l.split("|").slice(1, -1).map((c) => c.trim()));
  const table = new Map(rows.filter((r) => r.length === 5).map((r) => [r[0], { web: r[3], bundler: r[4] }]));
  // Rows whose tests live in other files.
  const elsewhere = ["Node, SSR (Next.js, Vite SSR)", "`<script type=\"module\">`", "TypeScript ≥ 5"];
  for (const [name, entries] of TESTED) {
    assert.ok(table.has(name), `README install table lacks a row "${name}"`);
    for (const e of ENTRIES) {
      assert.equal(table.get(name)[e].startsWith("✅ tested"), entries.includes(e), `README marks for ${name}, ${e} entry`);
    }
  }
  for (const name of table.keys()) {
    assert.ok(TESTED.has(name) || elsewhere.includes(name), `README row "${name}" has no test`);
  }
});
