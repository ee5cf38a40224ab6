// Adds a clear error to the `web` entry's constructor when the module is used before
// `await init()`: the generated glue would otherwise throw a bare
// "TypeError: Cannot read properties of undefined (reading '<the constructor's export>')".
// (The bundler entry instantiates the wasm at import, so it needs no guard.)
//   node scripts/guard-init.mjs pkg/speech_token_client.js
import { readFileSync, writeFileSync } from "node:fs";

const file = process.argv[2];
const source = readFileSync(file, "utf8");
const anchor = /(\n\s*constructor\(options\) \{\n)(\s*)(const ret = wasm\.tokenclient_new\((?:options|addHeapObject\(options\))\);)/g;
const matches = [...source.matchAll(anchor)];
if (matches.length !== 1) {
  console.error(`[pkg] error: guard-init: expected one TokenClient constructor in ${file}, found ${matches.length} (wasm-bindgen's glue changed?)`);
  process.exit(1);
}
const guard =
  'if (wasm === undefined) throw Object.assign(new Error("speech-token-client is not initialized: ' +
  'call `await init()` (the default export) before `new TokenClient()`, or import ' +
  '\\"speech-token-client/bundler\\" with a bundler that supports WebAssembly imports"), ' +
  '{ name: "SpeechTokenError", kind: "config" });';
writeFileSync(file, source.replace(anchor, `$1$2${guard}\n$2$3`));
