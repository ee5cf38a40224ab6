// Type-checks every ```js example of README.md with `tsc --strict` against the real Speech SDK's
// types and the package's shipped .d.ts (pkg/): a README example that does not type-check is a
// broken promise to TypeScript users (the quickstart once failed with TS2345). The examples are
// also executed in Chromium by readme.test.mjs.
//
// Each block becomes a module with the declarations the README shows elsewhere (`client`, the
// app's MSAL instance and sign-in prompt). Run from the repository root:
//   node --test tests/e2e/readme-types.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ROOT, requirePkg } from "./helpers.mjs";

const blocks = [...readFileSync(path.join(ROOT, "README.md"), "utf8").matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);

function toTs(code) {
  const body = code
    .split("\n")
    .filter((l) => !/^import .* from "(speech-token-client|microsoft-cognitiveservices-speech-sdk)";$/.test(l))
    .join("\n");
  const prelude = [
    'import init, { TokenClient } from "speech-token-client";',
    'import * as SpeechSDK from "microsoft-cognitiveservices-speech-sdk";',
    "void init; void TokenClient; void SpeechSDK;",
  ];
  if (!/\bclient\s*=/.test(body)) prelude.push("declare const client: TokenClient;");
  if (/\bmsalInstance\b/.test(body)) {
    prelude.push("declare const msalInstance: { acquireTokenSilent(request: { scopes: string[] }): Promise<{ accessToken: string }> };");
  }
  if (/\bshowSignIn\b/.test(body)) prelude.push("declare function showSignIn(): void;");
  return [...prelude, body, "export {};"].join("\n");
}

function tsc(dir, files) {
  const config = {
    compilerOptions: {
      strict: true, noEmit: true, target: "ES2022", module: "ES2022", moduleResolution: "bundler",
      lib: ["ES2022", "DOM"], types: [],
      // The SDK's own .d.ts need Node's types (fs, Buffer); ours are checked by package.test.mjs.
      skipLibCheck: true,
      paths: { "speech-token-client": [path.join(ROOT, "pkg/speech_token_client.d.ts")] },
      typeRoots: [],
    },
    files,
  };
  writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(config));
  try {
    execFileSync(path.join(ROOT, "node_modules/.bin/tsc"), ["-p", dir], { encoding: "utf8", cwd: ROOT });
    return "";
  } catch (e) {
    return `${e.stdout}${e.stderr}`;
  }
}

test("every README example type-checks under tsc --strict with the real SDK types", () => {
  requirePkg();
  assert.ok(blocks.length >= 5, `found ${blocks.length} js blocks`);
  const dir = mkdtempSync(path.join(ROOT, "target", "readme-types-"));
  try {
    const files = blocks.map((code, i) => {
      const file = path.join(dir, `block${i}.ts`);
      writeFileSync(file, toTs(code));
      return file;
    });
    const out = tsc(dir, files);
    assert.equal(out, "", `README examples fail to type-check:\n${out}`);
    // Negative control: the same check rejects a misuse (a SpeechConfig where a
    // SpeechTranslationConfig belongs), so a pass above is not vacuous.
    const bad = path.join(dir, "misuse.ts");
    writeFileSync(bad, toTs("const c = await client.speechConfig(SpeechSDK);\nnew SpeechSDK.TranslationRecognizer(c);\n"));
    assert.match(tsc(dir, [bad]), /TS2345/, "tsc must reject the misuse");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
