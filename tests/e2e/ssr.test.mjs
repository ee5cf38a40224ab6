// Server-side rendering (issue 18): importing the package in a server-rendered app (Next.js, Vite
// SSR, Remix, …) must not touch `window` at import time. In Node without a DOM, each entry point
// imports, the web entry's `init()` works (Node gets the inline-wasm glue: its fetch cannot read
// file: URLs), and `new TokenClient(…)` there throws a clear error instead of half-working.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { consumerApp, packTarball } from "./consumer.mjs";

let work, app;

before(() => {
  let tarball;
  ({ work, tarball } = packTarball("ssr"));
  app = consumerApp(work, tarball);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs `code` as an ES module in a fresh Node process in the app; returns its JSON output. */
function node(code) {
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", code], { cwd: app, encoding: "utf8", stdio: "pipe" });
  return JSON.parse(out.trim().split("\n").pop());
}

const NO_DOM = `if (typeof window !== "undefined" || typeof document !== "undefined") throw new Error("this Node has a DOM");`;

test("SSR: both entries import in Node without a DOM (no window at import time)", () => {
  const r = node(`${NO_DOM}
const web = await import("speech-token-client");
const bundler = await import("speech-token-client/bundler");
// The files a server bundler (webpack's "webpack"/"production" conditions) picks: import-safe too.
const plain = await import("speech-token-client/speech_token_client.js").catch((e) => ({ error: e.code }));
console.log(JSON.stringify({ web: [typeof web.default, typeof web.TokenClient], bundler: typeof bundler.TokenClient, plain: plain.error ?? typeof plain.TokenClient }));`);
  assert.deepEqual(r.web, ["function", "function"]);
  assert.equal(r.bundler, "function");
  // Not exported (only the entry points are); the file itself is covered by the next test.
  assert.equal(r.plain, "ERR_PACKAGE_PATH_NOT_EXPORTED");
});

test("SSR: the separate-.wasm glue (what webpack and vite build pick) imports in Node too", () => {
  const r = node(`${NO_DOM}
const m = await import("./node_modules/speech-token-client/speech_token_client.js");
console.log(JSON.stringify({ ok: typeof m.TokenClient }));`);
  assert.equal(r.ok, "function");
});

test("SSR: init() works in Node (the inline wasm needs no fetch)", () => {
  const r = node(`${NO_DOM}
const { default: init } = await import("speech-token-client");
const exports = await init();
console.log(JSON.stringify({ memory: exports.memory instanceof WebAssembly.Memory }));`);
  assert.equal(r.memory, true);
});

// With no page (`window`) and no worker global, the constructor throws a SpeechTokenError of kind
// "config" whose message says that TokenClient runs in the browser only, whatever the brokerUrl
// (it used to say "a relative brokerUrl needs a page location", or create a client that fetched
// from Node with an absolute one).
const browserOnly = (code) => `${NO_DOM}
const { default: init, TokenClient } = await import("speech-token-client");
await init();
let result;
try { ${code}; result = { created: true }; }
catch (e) { result = { name: e?.name, kind: e?.kind, message: String(e?.message ?? e) }; }
console.log(JSON.stringify(result));`;

for (const [what, url] of [["a relative brokerUrl", "/api/speech-token"], ["an absolute brokerUrl", "https://app.example/api/speech-token"]]) {
  test(`SSR: new TokenClient with ${what} in Node throws a clear "browser only" config error`, () => {
    const r = node(browserOnly(`new TokenClient({ brokerUrl: ${JSON.stringify(url)} })`));
    assert.equal(r.created, undefined, "the client must not be created without a browser");
    assert.equal(r.name, "SpeechTokenError");
    assert.equal(r.kind, "config");
    assert.match(r.message, /browser/i, `the message says it needs a browser: ${r.message}`);
  });
}

// A server shim's `Window` (some SSR setups define one) whose `prototype` has no
// `isPrototypeOf` of its own (a null-prototype object): still the same clear config error, never
// a TypeError thrown out of the constructor.
test("SSR: a shim Window with a null-prototype prototype gets the same browser-only error", () => {
  const r = node(browserOnly(`globalThis.Window = { prototype: Object.create(null) };
new TokenClient({ brokerUrl: "https://app.example/api/speech-token" })`));
  assert.equal(r.created, undefined, "the client must not be created without a browser");
  assert.equal(r.name, "SpeechTokenError", `not a TypeError: ${r.message}`);
  assert.equal(r.kind, "config");
  assert.match(r.message, /browser/i);
});
