// Post-processing of wasm-pack's `web` output in <out>/ (default pkg/), so that the package works
// in every toolchain without configuration (issue 18). Writes:
//
//   inline/speech_token_client.js  the same glue with the wasm embedded (base64): `init()` needs
//                                  no URL and no fetch. Picked (package.json "exports", condition
//                                  "node" and "default"; also "main"/"module" for resolvers that
//                                  ignore "exports", such as Parcel's default) by toolchains that
//                                  do not rewrite `new URL("….wasm", import.meta.url)`: esbuild,
//                                  Rollup, Vite's dev server (dependency pre-bundling moves the
//                                  glue away from the wasm), Node (SSR: Node's fetch cannot read
//                                  file: URLs). Toolchains that do bundle the wasm as an asset
//                                  (conditions "webpack" and "production": webpack 5, `vite build`)
//                                  get the plain glue and a separate, streamed .wasm file.
//   bundler/speech_token_client.js the `speech-token-client/bundler` entry: the same module,
//   bundler/inline.js              initialised on import by a top-level `await init()` (no init()
//                                  call, no WebAssembly ES-module integration needed), over the
//                                  plain glue resp. the inline one.
//   bundler/speech_token_client.d.ts  its types (the web types without `default`/init).
//   bundler/package.json           for resolvers that ignore "exports" (Parcel's default).
//
// And it rewrites the generated `.d.ts`: wasm-bindgen declares `[Symbol.dispose](): void`, which
// fails to type-check (TS2550) unless the consumer's `lib` has `esnext.disposable`. The member is
// declared instead through an interface that has it only where `Symbol.dispose` exists in the
// consumer's lib, so `using client = new TokenClient(…)` still type-checks there.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const out = process.argv[2] || "pkg";
const NAME = "speech_token_client";
const fail = (msg) => { console.error(`[pkg] error: ${msg}`); process.exit(1); };

// 1. Inline variant of the glue.
const glue = readFileSync(path.join(out, `${NAME}.js`), "utf8");
const urlRe = new RegExp(String.raw`new URL\((["'\`])${NAME}_bg\.wasm\1,\s*import\.meta\.url\)`, "g");
const hits = glue.match(urlRe) ?? [];
if (hits.length !== 1) fail(`expected one new URL("${NAME}_bg.wasm", import.meta.url) in the glue, found ${hits.length}`);
if (/__stc_wasm_bytes/.test(glue)) fail("the glue already uses the name __stc_wasm_bytes");
const wasm = readFileSync(path.join(out, `${NAME}_bg.wasm`));
const inline = glue.replace(urlRe, "__stc_wasm_bytes()") + `
// The wasm module (${wasm.length} bytes), embedded so that no bundler or server has to find it.
function __stc_wasm_bytes(){const s=atob("${wasm.toString("base64")}"),b=new Uint8Array(s.length);for(let i=0;i<s.length;i++)b[i]=s.charCodeAt(i);return b}
`;
if (/import\.meta\.url/.test(inline)) fail("the inline glue still refers to import.meta.url");
mkdirSync(path.join(out, "inline"), { recursive: true });
writeFileSync(path.join(out, "inline", `${NAME}.js`), inline);

// 2. Types: [Symbol.dispose] without requiring the esnext.disposable lib.
const dtsPath = path.join(out, `${NAME}.d.ts`);
let dts = readFileSync(dtsPath, "utf8");
const disposable = [];
dts = dts.replace(/^export class (\w+) \{[\s\S]*?^\}/gm, (body, name) => {
  const stripped = body.replace(/^[ \t]*\[Symbol\.dispose\]\(\): void;[ \t]*\r?\n/m, "");
  if (stripped !== body) disposable.push(name);
  return stripped;
});
if (/Symbol\.dispose/.test(dts)) fail("a [Symbol.dispose] declaration was left in the .d.ts");
if (disposable.length > 0) {
  dts += `
/**
 * \`[Symbol.dispose]()\` (same as \`free()\`), declared only where the consumer's TypeScript \`lib\`
 * knows \`Symbol.dispose\` (esnext.disposable), so that \`using\` works there and the declarations
 * still type-check with an older \`lib\` and \`skipLibCheck: false\`.
 */
type SpeechTokenClientDisposable = SymbolConstructor extends { readonly dispose: infer K extends symbol }
  ? { [P in K]: () => void }
  : {};
${disposable.map((n) => `export interface ${n} extends SpeechTokenClientDisposable {}`).join("\n")}
`;
}
writeFileSync(dtsPath, dts);

// 3. The no-init `bundler` entry, over the plain and the inline glue.
mkdirSync(path.join(out, "bundler"), { recursive: true });
const wrapper = (from) => `// speech-token-client/bundler: the same module as "speech-token-client", initialised on import.
import init from "${from}";
export * from "${from}";
await init();
`;
writeFileSync(path.join(out, "bundler", `${NAME}.js`), wrapper(`../${NAME}.js`));
writeFileSync(path.join(out, "bundler", "inline.js"), wrapper(`../inline/${NAME}.js`));
// For resolvers that ignore "exports" (Parcel's default, TypeScript's node10): the subfolder's own
// package.json. Also what Node and webpack read for the folder's module type and side effects.
writeFileSync(path.join(out, "bundler", "package.json"), JSON.stringify({
  private: true, type: "module", main: "inline.js", module: "inline.js", types: `${NAME}.d.ts`, sideEffects: true,
}, null, 2) + "\n");
writeFileSync(path.join(out, "bundler", `${NAME}.d.ts`),
  `// speech-token-client/bundler: the API of "speech-token-client", initialised on import (no init()).\nexport * from "../${NAME}.js";\n`);

console.log(`[pkg] variants: inline glue ${inline.length} bytes; bundler entry; .d.ts without a lib requirement (${disposable.join(", ") || "no disposable classes"})`);
