// Orders the entries of the minified glue's import object (the ~125 small functions the wasm
// module imports, `{__proto__:null,a:...,b:...}`) for gzip: the JS counterpart of
// order-functions.mjs's layout search (bench/size-steps.md, step 38). Only the compressed size
// changes: -0.07 KB of the glue's ~4 KB.
//
// Safe by construction, and checked: the glue is parsed (acorn), and the object is reordered
// only if every entry other than `__proto__: null` is a plain `name: function` property (no
// spread, getter, method, computed or duplicate key: defining such properties has no side
// effect and their order is not observable to the wasm module, which looks its imports up by
// name) and its names are exactly the wasm module's imports from this object. The rewritten
// glue is parsed again and must hold the same (name, source) pairs.
//
// The search: move a run of 1-6 entries elsewhere, keep the move when the file gzips smaller.
// A fixed pseudo-random sequence: the same glue gives the same order for a given Node (the
// measure is Node's bundled zlib; another build of zlib may keep other moves).
//
// Usage: node scripts/order-glue.mjs GLUE.js MODULE.wasm   (rewrites GLUE.js in place)

import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { parse } from "acorn";
import { searchLayout } from "./layout-search.mjs";

/** Moves tried: ~0.2 ms each (the glue is ~12 KB). */
const MOVES = 20000;
/** The longest run of neighbouring entries moved at once. */
const MAX_RUN = 6;

const [file, wasmFile] = process.argv.slice(2);
if (!file || !wasmFile) {
  console.error("usage: node scripts/order-glue.mjs GLUE.js MODULE.wasm");
  process.exit(2);
}
const fail = (why) => {
  console.error(`[pkg] error: ${file}: ${why}`);
  process.exit(1);
};

/** The import object: of the object literals whose first property is `__proto__: null`, the
 * one with the most properties (wasm-bindgen's `__wbg_get_imports`; the other is the one-entry
 * `{__proto__: null, <module>: imports}`). Its entries, each as [name, source]. */
function importObject(source) {
  const ast = parse(source, { ecmaVersion: "latest", sourceType: "module" });
  let found;
  (function walk(node) {
    if (!node || typeof node.type !== "string") return;
    if (node.type === "ObjectExpression" && node.properties.length > 2) {
      const [first] = node.properties;
      const isProto =
        first.type === "Property" &&
        !first.computed &&
        (first.key.name ?? first.key.value) === "__proto__" &&
        first.value.type === "Literal" &&
        first.value.value === null;
      if (isProto && (!found || node.properties.length > found.properties.length)) found = node;
    }
    for (const value of Object.values(node)) {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value.type === "string") walk(value);
    }
  })(ast);
  if (!found) fail("no import object ({__proto__: null, ...}) found");
  const entries = found.properties.slice(1).map((p) => {
    const plain =
      p.type === "Property" &&
      p.kind === "init" &&
      !p.computed &&
      !p.method &&
      !p.shorthand &&
      (p.key.type === "Identifier" || typeof p.key.value === "string") &&
      (p.value.type === "ArrowFunctionExpression" || p.value.type === "FunctionExpression");
    if (!plain) fail(`not a plain name: function entry: ${source.slice(p.start, p.end).slice(0, 80)}`);
    return [p.key.name ?? p.key.value, source.slice(p.start, p.end)];
  });
  return { entries, start: found.properties[1].start, end: found.properties.at(-1).end };
}

const glue = readFileSync(file, "utf8");
const { entries, start, end } = importObject(glue);
const names = entries.map(([name]) => name);
if (new Set(names).size !== names.length) fail("a name appears twice in the import object");
// The module's imports, all from this one object (one import module).
const imports = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(wasmFile)));
const modules = new Set(imports.map((i) => i.module));
const sorted = (list) => [...list].sort().join("\u0000");
if (modules.size !== 1 || sorted(names) !== sorted(imports.map((i) => i.name))) {
  fail(`the import object's names are not the wasm module's imports (${wasmFile})`);
}

const before = glue.slice(0, start);
const after = glue.slice(end);
const text = (order) => before + order.map(([, source]) => source).join(",") + after;
const gzipped = (order) => gzipSync(text(order), { level: 9 }).length;
const { order, first, best } = searchLayout(entries, gzipped, { moves: MOVES, maxRun: MAX_RUN });

const result = text(order);
const key = (list) => list.map(([name, source]) => `${name}\u0000${source}`).sort().join("\u0001");
if (key(importObject(result).entries) !== key(entries)) fail("the reordered glue lost or changed an entry");
writeFileSync(file, result);
console.log(`[pkg] ${entries.length} glue imports ordered for gzip (${first} -> ${best} B)`);
