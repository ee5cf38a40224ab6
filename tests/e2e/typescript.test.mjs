// TypeScript consumers (issue 18): the packed package installed into a fresh app, type-checked by
// tsc under `strict` with `skipLibCheck: false` (so the shipped .d.ts is checked too) and the
// default `lib` of an ES2022 target, for each `moduleResolution` an app uses: node16, nodenext,
// bundler. Both entry points (tests/types/consumer.ts, consumer-bundler.ts); with `lib` ES2022 +
// DOM only, `headers` as a `HeadersInit` (consumer-dom.ts); with an esnext `lib`,
// `using client = new TokenClient(…)` (consumer-using.ts); with `exactOptionalPropertyTypes`,
// options given as `undefined` (consumer-exact.ts). A negative control shows that the
// check sees the failure it guards against (wasm-bindgen's `[Symbol.dispose](): void` under ES2022).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./helpers.mjs";
import { consumerApp, packTarball } from "./consumer.mjs";

const TSC = path.join(ROOT, "node_modules/.bin/tsc");
let work, app;

before(() => {
  let tarball;
  ({ work, tarball } = packTarball("ts-consumer"));
  app = consumerApp(work, tarball);
  for (const f of ["consumer.ts", "consumer-bundler.ts", "consumer-using.ts", "consumer-dom.ts", "consumer-exact.ts"]) {
    copyFileSync(path.join(ROOT, "tests/types", f), path.join(app, f));
  }
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/**
 * Writes tsconfig.<name>.json and runs tsc on it; resolves `{ ok, output }`. The runs are started
 * together (see `runs`) and awaited by the tests: tsc is slow to start (it parses the DOM lib).
 */
function tsc(name, compilerOptions, files) {
  const config = path.join(app, `tsconfig.${name}.json`);
  writeFileSync(config, JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, skipLibCheck: false, target: "ES2022", types: [],
      noUnusedLocals: true, ...compilerOptions,
    },
    files,
  }, null, 2));
  return new Promise((resolve) => {
    execFile(TSC, ["-p", config, "--pretty", "false"], { cwd: app, encoding: "utf8" },
      (error, stdout, stderr) => resolve({ ok: !error, output: `${stdout}${stderr}` }));
  });
}

const MATRIX = {
  node16: { module: "node16", moduleResolution: "node16" },
  nodenext: { module: "nodenext", moduleResolution: "nodenext" },
  bundler: { module: "es2022", moduleResolution: "bundler" },
};

const runs = {};
before(() => {
  for (const [name, options] of Object.entries(MATRIX)) runs[name] = tsc(name, options, ["consumer.ts", "consumer-bundler.ts"]);
  // DOM.Iterable as in common app configs (consumer.ts passes a `Headers` object as headers)
  runs.using = tsc("using", { ...MATRIX.bundler, lib: ["ESNext", "DOM", "DOM.Iterable"] }, ["consumer.ts", "consumer-using.ts"]);
  runs.usingEs2022 = tsc("using-es2022", MATRIX.bundler, ["consumer-using.ts"]);
  // DOM without DOM.Iterable: a `Headers` is no `Iterable` there, still a `HeadersInit`
  runs.domOnly = tsc("dom-only", { ...MATRIX.bundler, lib: ["ES2022", "DOM"] }, ["consumer-dom.ts"]);
  // `exactOptionalPropertyTypes`: options given as `undefined` (an unset setting)
  runs.exact = tsc("exact", { ...MATRIX.bundler, lib: ["ES2022", "DOM"], exactOptionalPropertyTypes: true }, ["consumer.ts", "consumer-exact.ts"]);
  writeFileSync(path.join(app, "raw.d.ts"), "export declare class Raw {\n  free(): void;\n  [Symbol.dispose](): void;\n}\n");
  runs.control = tsc("control", { ...MATRIX.bundler, lib: ["ES2022"] }, ["raw.d.ts"]);
});

for (const name of Object.keys(MATRIX)) {
  test(`tsc strict, moduleResolution ${name}, skipLibCheck false, default lib (ES2022): both entries`, async () => {
    const { ok, output } = await runs[name];
    assert.ok(ok, `tsc failed:\n${output}`);
  });
}

test("tsc with lib esnext: the client is Disposable (`using`)", async () => {
  const { ok, output } = await runs.using;
  assert.ok(ok, `tsc failed:\n${output}`);
});

test("tsc with lib ES2022 + DOM (no DOM.Iterable): `headers` takes a HeadersInit and a Headers", async () => {
  const { ok, output } = await runs.domOnly;
  assert.ok(ok, `tsc failed:\n${output}`);
});

test("tsc with exactOptionalPropertyTypes: options, speechConfig options and the credential's abortSignal may be given as undefined", async () => {
  const { ok, output } = await runs.exact;
  assert.ok(ok, `tsc failed:\n${output}`);
});

test("tsc with the default ES2022 lib: `using` the client is rejected (Disposable is esnext-only)", async () => {
  const { ok, output } = await runs.usingEs2022;
  assert.ok(!ok, "consumer-using.ts must not type-check without esnext.disposable");
  assert.match(output, /Cannot find (global type|name) 'Disposable'/, output);
});

test("negative control: wasm-bindgen's raw `[Symbol.dispose](): void` fails under the ES2022 lib (TS2550)", async () => {
  const { ok, output } = await runs.control;
  assert.ok(!ok, "the raw declaration must fail");
  assert.match(output, /TS2550/);
});
