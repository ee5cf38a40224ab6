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

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/order-functions.mjs MODULE.wasm");
  process.exit(2);
}
const wasm = readFileSync(file);

function leb(pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = wasm[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(byte & 0x80)) return [value, pos];
  }
}

function uleb(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

/** Skips a table or memory's limits. */
function limits(pos) {
  const [flags, p] = leb(pos);
  pos = leb(p)[1];
  return flags & 1 ? leb(pos)[1] : pos;
}

let importedFunctions = 0;
const sizes = [];
if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error(`${file} is not a wasm module`);
for (let pos = 8; pos < wasm.length; ) {
  const id = wasm[pos];
  const [size, start] = leb(pos + 1);
  pos = start + size;
  if (id === 0 && wasm.toString("latin1", start + 1, start + 5) === "name" && wasm[start] === 4) {
    throw new Error(`${file} already has a name section: strip it first (wasm-opt --strip-debug)`);
  }
  if (id === 2) {
    let [count, p] = leb(start);
    for (let i = 0; i < count; i++) {
      for (let s = 0; s < 2; s++) {
        const [len, q] = leb(p);
        p = q + len;
      }
      const kind = wasm[p++];
      if (kind === 0) {
        p = leb(p)[1];
        importedFunctions++;
      } else if (kind === 1) p = limits(p + 1);
      else if (kind === 2) p = limits(p);
      else if (kind === 3) p += 2;
      else if (kind === 4) p = leb(p + 1)[1];
      else throw new Error(`import kind ${kind} is not known here`);
    }
  } else if (id === 10) {
    let [count, p] = leb(start);
    for (let i = 0; i < count; i++) {
      const [len, q] = leb(p);
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
