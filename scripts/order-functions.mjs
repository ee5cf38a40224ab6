// Names every function defined in a wasm module after its rank by body size (smallest first),
// in a "name" section appended to the file, so that `wasm-opt --reorder-functions-by-name` then
// lays the code section out in that order (scripts/build-pkg.sh; the names are stripped after).
//
// Why: gzip finds repeats only within its 32 KB window, and functions of like size are alike
// (the many small import shims and closure invokers side by side, the big state machines
// together): -0.27 KB of gzipped wasm against binaryen's order (bench/size-steps.md, step 30).
// binaryen has no pass that orders by size; it can order by name.
//
// Usage: node scripts/order-functions.mjs MODULE.wasm   (rewrites MODULE.wasm in place)

import { readFileSync, writeFileSync } from "node:fs";
import { leb, sections, uleb } from "./wasm-bytes.mjs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/order-functions.mjs MODULE.wasm");
  process.exit(2);
}
const wasm = readFileSync(file);
// Defined functions are numbered after the imported ones.
const importedFunctions = WebAssembly.Module.imports(new WebAssembly.Module(wasm)).filter(
  (i) => i.kind === "function",
).length;
const sizes = [];
for (const { id, start } of sections(wasm)) {
  if (id === 0 && wasm.toString("latin1", start + 1, start + 5) === "name" && wasm[start] === 4) {
    throw new Error(`${file} already has a name section: strip it first (wasm-opt --strip-debug)`);
  }
  if (id === 10) {
    let [count, p] = leb(wasm, start);
    for (let i = 0; i < count; i++) {
      const [len, q] = leb(wasm, p);
      sizes.push(len);
      p = q + len;
    }
  }
}

const order = sizes.map((size, i) => [size, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
const rank = new Array(sizes.length);
order.forEach(([, i], r) => (rank[i] = r));
const width = String(sizes.length).length;
const entries = [...uleb(sizes.length)];
for (let i = 0; i < sizes.length; i++) {
  const name = Buffer.from(String(rank[i]).padStart(width, "0"));
  entries.push(...uleb(importedFunctions + i), ...uleb(name.length), ...name);
}
const body = [...uleb(4), ...Buffer.from("name"), 1, ...uleb(entries.length), ...entries];
writeFileSync(file, Buffer.concat([wasm, Buffer.from([0, ...uleb(body.length), ...body])]));
console.log(`[pkg] ${sizes.length} functions named by size for --reorder-functions-by-name`);
