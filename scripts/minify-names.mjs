// Applies wasm-opt's `--minify-imports-and-exports-and-modules` renaming to the JS glue
// (issue 19). wasm-bindgen names every import `__wbg_<name>_<16 hex digits>` and every closure
// invoker export after its full Rust type (300 characters): 200 names, written once in the wasm
// and once in the glue, whose hex digits gzip cannot compress. wasm-opt renames them in the wasm
// to one or two characters and prints the mapping (the same thing Emscripten does for its -Oz
// builds); this script renames them in the glue to match:
//   - the import object's module key ("./speech_token_client_bg.js") and its keys;
//   - every `wasm.<export>` access (the glue keeps `instance.exports` in `wasm`);
//   - the names in the wasm's own `.d.ts` and in the glue's `InitOutput`, so they stay true.
// Every name must be found exactly where expected, or the build fails (a wasm-bindgen upgrade
// that changes the glue's shape must not yield a package that cannot instantiate).
//   node scripts/minify-names.mjs <map.json> <renamed.wasm> <glue.js> [<wasm.d.ts> [<glue.d.ts>]]
import { readFileSync, writeFileSync } from "node:fs";
import { leb, sections, uleb } from "./wasm-bytes.mjs";

const [mapFile, wasmFile, glueFile, wasmDtsFile, glueDtsFile] = process.argv.slice(2);
const fail = (msg) => { console.error(`[pkg] error: minify-names: ${msg}`); process.exit(1); };
const map = JSON.parse(readFileSync(mapFile, "utf8"));
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const word = (s) => `(?<![\\w$])${escape(s)}(?![\\w$])`;

let glue = readFileSync(glueFile, "utf8");

// Exports an app may read from what `init()` resolves to keep their names: wasm-opt renamed
// them too, so they are renamed back in the wasm's export section.
const KEEP = new Set(["memory"]);
const restored = new Map(map.exports.filter(([name]) => KEEP.has(name)).map(([name, m]) => [m, name]));
map.exports = map.exports.filter(([name]) => !KEEP.has(name));
if (restored.size) writeFileSync(wasmFile, renameExports(readFileSync(wasmFile), restored));

// The renamed module's own imports and exports: the map must describe exactly them, and they
// give the new module name (wasm-opt's map lists only the import and export names).
const compiled = new WebAssembly.Module(readFileSync(wasmFile));
const importsNow = WebAssembly.Module.imports(compiled);
const exportsNow = new Set(WebAssembly.Module.exports(compiled).map((e) => e.name));
const sameSet = (a, b) => a.size === b.size && [...a].every((x) => b.has(x));
if (!sameSet(new Set(importsNow.map((i) => i.name)), new Set(map.imports.map(([, , m]) => m)))) fail("the map's imports are not the wasm's");
if (!sameSet(exportsNow, new Set([...map.exports.map(([, m]) => m), ...restored.values()]))) fail("the map's exports are not the wasm's");
const oldModules = new Set(map.imports.map(([module]) => module));
const newModules = new Set(importsNow.map((i) => i.module));
if (oldModules.size !== 1 || newModules.size !== 1) fail(`expected one import module, found ${[...oldModules]} -> ${[...newModules]}`);

// 1. The import object: `const import0 = { __proto__: null, <name>: function…, … }`, returned
//    as `{ "<module>": import0 }`.
const [oldModule] = oldModules;
const [newModule] = newModules;
{
  const re = new RegExp(`(["'])${escape(oldModule)}\\1(\\s*:)`, "g");
  const hits = glue.match(re) ?? [];
  if (hits.length !== 1) fail(`expected the module key "${oldModule}" once in the glue, found ${hits.length}`);
  glue = glue.replace(re, `${JSON.stringify(newModule)}$2`);
}
for (const [, name, minified] of map.imports) {
  const re = new RegExp(`(\\n\\s*)${escape(name)}(\\s*:)`, "g");
  const hits = glue.match(re) ?? [];
  if (hits.length !== 1) fail(`expected the import ${name} once in the import object, found ${hits.length}`);
  glue = glue.replace(re, `$1${JSON.stringify(minified)}$2`);
}

// 2. Exports, read through `wasm.` (some, such as __instance_terminated, the glue never reads).
for (const [name, minified] of map.exports) {
  const re = new RegExp(`(?<![\\w$])wasm\\.${escape(name)}(?![\\w$])`, "g");
  glue = glue.replace(re, `wasm[${JSON.stringify(minified)}]`);
}
for (const [, name] of map.imports) {
  if (new RegExp(word(name)).test(glue)) fail(`import name ${name} left in the glue`);
}
// Every export the glue reads (`wasm.x` or `wasm["x"]`) must be one the module has (an old name
// left behind is not).
for (const [, dotted, quoted] of glue.matchAll(/(?<![\w$.])wasm(?:\.([\w$]+)|\[("[^"]*")\])/g)) {
  const name = dotted ?? JSON.parse(quoted);
  if (!exportsNow.has(name)) fail(`the glue reads wasm.${name}, which the module does not export`);
}
if (/(?<![\w$.])wasm\[(?!")/.test(glue) || /\{[^}]*\}\s*=\s*wasm\b/.test(glue)) fail("the glue reads the exports in a way this script does not check");
writeFileSync(glueFile, glue);

// 3. The declarations of the raw exports: `export const <name>: …` in the wasm's .d.ts and
//    `readonly <name>: …` in the glue's `InitOutput` (what `init()` resolves to).
const identifier = (m) => (/^[A-Za-z_$][\w$]*$/.test(m) ? m : JSON.stringify(m));
for (const [file, form] of [[wasmDtsFile, "export const "], [glueDtsFile, "readonly "]]) {
  if (!file) continue;
  let dts = readFileSync(file, "utf8");
  for (const [name, minified] of map.exports) {
    dts = dts.replace(new RegExp(`^(\\s*)${form}${escape(name)}:`, "m"), `$1${form}${identifier(minified)}:`);
  }
  for (const [name] of map.exports) {
    if (new RegExp(`^\\s*${form}${escape(name)}:`, "m").test(dts)) fail(`${name} left in ${file}`);
  }
  writeFileSync(file, dts);
}
console.log(`[pkg] minified ${map.imports.length} import and ${map.exports.length} export names`);

/** The wasm `bytes` with the exports named in `names` (new name by current name) renamed. */
function renameExports(bytes, names) {
  const parts = [bytes.subarray(0, 8)];
  let seen = 0;
  for (const { id, pos, start, end } of sections(bytes)) {
    if (id !== 7) { parts.push(bytes.subarray(pos, end)); continue; }
    let [count, p] = leb(bytes, start);
    const body = [...uleb(count)];
    for (let i = 0; i < count; i++) {
      const [len, q] = leb(bytes, p);
      const name = Buffer.from(bytes.subarray(q, q + len)).toString("utf8");
      const [, next] = leb(bytes, q + len + 1); // kind byte, then the index
      const renamed = names.get(name);
      if (renamed !== undefined) seen++;
      const encoded = Buffer.from(renamed ?? name, "utf8");
      body.push(...uleb(encoded.length), ...encoded, ...bytes.subarray(q + len, next));
      p = next;
    }
    parts.push(Uint8Array.of(7, ...uleb(body.length), ...body));
  }
  if (seen !== names.size) fail(`renamed ${seen} of ${names.size} exports back`);
  return Buffer.concat(parts);
}
