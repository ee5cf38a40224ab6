// The npm package as a consumer gets it: `npm pack` contents, package.json metadata, and the
// TypeScript surface (tsc --strict against the shipped .d.ts, with @ts-expect-error misuse lines).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PKG = path.join(ROOT, "pkg");

test("npm pack ships exactly the runtime files and types", () => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PKG, encoding: "utf8" });
  const [info] = JSON.parse(out);
  const files = info.files.map((f) => f.path).sort();
  assert.deepEqual(files, [
    "README.md",
    "bundler/inline.js",
    "bundler/package.json",
    "bundler/speech_token_client.d.ts",
    "bundler/speech_token_client.js",
    "inline/speech_token_client.js",
    "package.json",
    "speech_token_client.d.ts",
    "speech_token_client.js",
    "speech_token_client_bg.wasm",
    "speech_token_client_bg.wasm.d.ts",
  ]);
  for (const f of info.files) assert.ok(!/\.(map|rs|ts\.map)$/.test(f.path), `unexpected ${f.path}`);
  // No local paths leak into the shipped glue or types.
  for (const f of ["speech_token_client.js", "speech_token_client.d.ts", "inline/speech_token_client.js"]) {
    const text = readFileSync(path.join(PKG, f), "utf8");
    assert.ok(!text.includes(ROOT), `${f} contains the local path ${ROOT}`);
    assert.ok(!/\/root\/|\/home\/|\.cargo\/registry/.test(text), `${f} contains a local path`);
  }
  const wasm = readFileSync(path.join(PKG, "speech_token_client_bg.wasm")).toString("latin1");
  assert.ok(!wasm.includes(ROOT) && !wasm.includes(".cargo/registry"), "the wasm binary contains local paths");
});

test("package.json carries the npm metadata, version equal to Cargo.toml", () => {
  const pkg = JSON.parse(readFileSync(path.join(PKG, "package.json"), "utf8"));
  const cargo = readFileSync(path.join(ROOT, "Cargo.toml"), "utf8");
  const version = /^version\s*=\s*"([^"]+)"/m.exec(cargo.split("[package]")[1])[1];
  assert.equal(pkg.name, "speech-token-client");
  assert.equal(pkg.version, version);
  assert.equal(pkg.type, "module");
  // The web entry has no side effects; the bundler entry instantiates the wasm on import.
  assert.deepEqual(pkg.sideEffects, ["./bundler/*.js"]);
  // Conditions, in order (the first that a toolchain has wins): types; Node/SSR and toolchains that
  // do not bundle `new URL("….wasm", import.meta.url)` get the inline wasm; webpack and production
  // builds (vite build, Parcel) the separate .wasm file (tests/e2e/toolchains.test.mjs).
  assert.deepEqual(pkg.exports["."], {
    types: "./speech_token_client.d.ts",
    node: "./inline/speech_token_client.js",
    webpack: "./speech_token_client.js",
    production: "./speech_token_client.js",
    default: "./inline/speech_token_client.js",
  });
  assert.deepEqual(pkg.exports["./bundler"], {
    types: "./bundler/speech_token_client.d.ts",
    node: "./bundler/inline.js",
    webpack: "./bundler/speech_token_client.js",
    production: "./bundler/speech_token_client.js",
    default: "./bundler/inline.js",
  });
  assert.deepEqual(Object.keys(pkg.exports["."]), ["types", "node", "webpack", "production", "default"], "condition order");
  // Resolvers that ignore "exports" (Parcel's default) get the inline glue, which needs no asset handling.
  assert.equal(pkg.main, "inline/speech_token_client.js");
  assert.equal(pkg.module, "inline/speech_token_client.js");
  assert.ok(pkg.license && pkg.repository && pkg.keywords.length > 0 && pkg.description);
});

test("the public TypeScript surface has no `any`", () => {
  const dts = readFileSync(path.join(PKG, "speech_token_client.d.ts"), "utf8");
  const publicPart = dts.split("export type InitInput")[0];
  const anyLines = (text) => text.split("\n").filter((l) => /\bany\b/.test(l) && !l.trim().startsWith("*"));
  assert.deepEqual(anyLines(publicPart), []);
  assert.ok(publicPart.includes("export class TokenClient"), "the public part holds the API");
  // Negative control: the check sees an `any` in a declaration (and not in a doc comment).
  assert.deepEqual(anyLines("/**\n * any callback\n */\nexport function f(): any;"), ["export function f(): any;"]);
});

test("tsc --strict compiles a consumer using every API member; misuse is rejected", () => {
  const tsc = path.join(ROOT, "node_modules/.bin/tsc");
  try {
    execFileSync(tsc, ["-p", path.join(ROOT, "tests/types/tsconfig.json")], { encoding: "utf8" });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
});
