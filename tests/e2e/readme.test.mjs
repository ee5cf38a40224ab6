// Executes every ```js example of README.md in real headless Chromium, against the dev broker and
// its fake Speech service, with the real Speech SDK: the README cannot rot.
//
// Each block becomes an ES module served by the broker (strict CSP, like an app). Package imports
// are mapped to the built pkg/ and the SDK's browser bundle; blocks that use `client` or
// `SpeechSDK` without defining them get the one-line setup the README shows above them.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BROKER_BIN = path.resolve(ROOT, process.env.BROKER_BIN ?? "target/release/speech-token-broker");
const SDK_DIR = path.join(ROOT, "node_modules/microsoft-cognitiveservices-speech-sdk/distrib/browser");

const blocks = [...readFileSync(path.join(ROOT, "README.md"), "utf8").matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);

let broker, base, browser, www;
// blocks of the relay recipe run against a second broker with --relay
let relayBroker, relayBase;
const isRelayBlock = (code) => code.includes("/relay/");

function toModule(code) {
  let body = code
    .replace(/import init, \{ TokenClient \} from "speech-token-client";/, 'import init, { TokenClient } from "/pkg/speech_token_client.js";')
    .replace(/import \* as SpeechSDK from "microsoft-cognitiveservices-speech-sdk";/, "const SpeechSDK = window.SpeechSDK;");
  const prelude = [];
  if (!/\bSpeechSDK\s*=/.test(body) && /\bSpeechSDK\b/.test(body)) prelude.push("const SpeechSDK = window.SpeechSDK;");
  if (!/from "\/pkg\//.test(body)) prelude.unshift('import init, { TokenClient } from "/pkg/speech_token_client.js";');
  if (!/\bclient\s*=/.test(body)) prelude.push("await init();", 'const client = new TokenClient({ brokerUrl: "/api/speech-token" });');
  // The session-provider recipe's app objects: a stand-in for @azure/msal-browser's
  // PublicClientApplication (its acquireTokenSilent contract) and the app's sign-in prompt.
  if (/\bmsalInstance\b/.test(body) && !/\bmsalInstance\s*=/.test(body)) {
    prelude.push('const msalInstance = { acquireTokenSilent: async ({ scopes }) => ({ accessToken: "app-session-for-" + scopes.join(" ") }) };');
  }
  if (/\bshowSignIn\b/.test(body) && !/showSignIn\s*=|function showSignIn/.test(body)) prelude.push("const showSignIn = () => {};");
  if (/\bclient\s*=/.test(body) && !/await init\(\)/.test(body)) prelude.push("await init();");
  const imports = prelude.filter((l) => l.startsWith("import"));
  const rest = prelude.filter((l) => !l.startsWith("import"));
  const bodyImports = body.split("\n").filter((l) => l.startsWith("import "));
  body = body.split("\n").filter((l) => !l.startsWith("import ")).join("\n");
  return [...imports, ...bodyImports,
    "try {", ...rest, body, "window.__readme = { done: true };",
    "} catch (e) { window.__readme = { done: true, error: String(e && e.stack || e) }; }"].join("\n");
}

before(async () => {
  assert.ok(existsSync(path.join(ROOT, "pkg/speech_token_client.js")), "pkg/ missing: run scripts/build-pkg.sh");
  www = mkdtempSync(path.join(tmpdir(), "readme-www-"));
  blocks.forEach((code, i) => {
    writeFileSync(path.join(www, `block${i}.mjs`), toModule(code));
    writeFileSync(path.join(www, `block${i}.html`),
      `<!doctype html><meta charset="utf-8"><script src="/vendor/microsoft.cognitiveservices.speech.sdk.bundle.js"></script><script type="module" src="block${i}.mjs"></script>`);
  });
  const spawnBroker = async (extra) => {
    const child = spawn(BROKER_BIN, ["--listen", "127.0.0.1:0", "--rate-limit", "0", "--www", www, "--pkg", path.join(ROOT, "pkg"), "--vendor", SDK_DIR, ...extra],
      { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"] });
    const url = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("broker did not start")), 20_000);
      readline.createInterface({ input: child.stdout }).once("line", (l) => { clearTimeout(t); resolve(l.replace("listening on ", "")); });
    });
    return [child, url];
  };
  [broker, base] = await spawnBroker([]);
  if (blocks.some(isRelayBlock)) [relayBroker, relayBase] = await spawnBroker(["--relay"]);
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"],
  });
});

after(async () => {
  await browser?.close();
  broker?.kill();
  relayBroker?.kill();
  if (www) rmSync(www, { recursive: true, force: true });
});

test("README has code examples to run", () => {
  assert.ok(blocks.length >= 4, `found ${blocks.length} js blocks`);
});

for (let i = 0; i < blocks.length; i++) {
  test(`README example ${i + 1} runs without error: ${blocks[i].split("\n")[0].slice(0, 60)}`, async () => {
    const context = await browser.newContext();
    await context.grantPermissions(["microphone"]).catch(() => {});
    const page = await context.newPage();
    const logs = [];
    const violations = [];
    page.on("console", (m) => logs.push(m.text()));
    page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
    await page.exposeFunction("__violation", (v) => violations.push(v)).catch(() => {});
    await page.goto(`${isRelayBlock(blocks[i]) ? relayBase : base}/block${i}.html`);
    await page.waitForFunction(() => window.__readme?.done, null, { timeout: 30_000 });
    const outcome = await page.evaluate(() => window.__readme);
    assert.equal(outcome.error, undefined, `example ${i + 1} threw: ${outcome.error}\n${blocks[i]}`);
    if (/recognizeOnceAsync/.test(blocks[i])) {
      // The quickstart recognizes from the (fake) microphone against the fake Speech service.
      await page.waitForFunction(() => true, null, { timeout: 1000 });
      const deadline = Date.now() + 20_000;
      while (!logs.includes("Hello world.") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.ok(logs.includes("Hello world."), `quickstart did not log the recognized phrase; console:\n${logs.join("\n")}`);
    }
    if (/speakTextAsync/.test(blocks[i])) {
      // a synthesis example logs how many audio bytes the (fake) service sent
      const deadline = Date.now() + 20_000;
      const bytes = () => logs.map((l) => /^(\d+) bytes of audio$/.exec(l)?.[1]).find(Boolean);
      while (!bytes() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.ok(Number(bytes()) > 0, `the synthesis example got no audio; console:\n${logs.join("\n")}`);
    }
    await context.close();
  });
}
