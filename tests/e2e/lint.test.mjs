// Package linters (issue 18), on the packed tarball (exactly what npm would publish):
// `publint --strict` (warnings are errors) and `@arethetypeswrong/cli` (types resolve for every
// entry point under each module resolution TypeScript users have).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./helpers.mjs";
import { packTarball } from "./consumer.mjs";

let work, tarball;

before(() => {
  ({ work, tarball } = packTarball("lint"));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function run(bin, args) {
  try {
    return { ok: true, output: execFileSync(path.join(ROOT, "node_modules/.bin", bin), args, { cwd: work, encoding: "utf8", stdio: "pipe", env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" } }) };
  } catch (e) {
    return { ok: false, output: `${e.stdout}${e.stderr}` };
  }
}

test("publint --strict on the tarball: no errors, warnings or suggestions", () => {
  const { ok, output } = run("publint", ["run", tarball, "--strict", "--level", "suggestion"]);
  assert.ok(ok, output);
  assert.doesNotMatch(output, /suggestion|warning|error/i, output);
});

test("@arethetypeswrong/cli on the tarball: every entry point's types resolve (ESM-only package)", () => {
  // esm-only: the package is ES modules only (`require()` of it is not supported), so the
  // node10 and node16-from-CommonJS resolutions are not checked; attw exits non-zero on any other problem.
  const { ok, output } = run("attw", [tarball, "--profile", "esm-only", "--format", "ascii"]);
  assert.ok(ok, output);
  const entries = output.split("***").filter((s) => s.includes('"speech-token-client'));
  assert.equal(entries.length, 4, output);
  for (const e of entries) {
    assert.match(e, /node16 \(from ESM\): 🟢/u, e);
    assert.match(e, /bundler: 🟢/u, e);
  }
});
