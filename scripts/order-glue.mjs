// Orders the entries of the minified glue's import object (the ~130 small functions the wasm
// module imports, `{__proto__:null,a:...,b:...}`) for gzip: the JS counterpart of
// order-functions.mjs's layout search (bench/size-steps.md, step 38). The entries of an object
// literal may come in any order (each key is unique; none has side effects when defined), so
// only the compressed size changes: -0.07 KB of the glue's ~4 KB.
//
// The search: move a run of 1-6 entries elsewhere, keep the move when the file gzips smaller;
// a fixed pseudo-random sequence, so the same glue gives the same order. The split is checked
// twice before anything is written: joined back, the entries give the file exactly, and each
// parses on its own as an object property.
//
// Usage: node scripts/order-glue.mjs GLUE.js   (rewrites GLUE.js in place)

import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

/** Moves tried: ~0.15 ms each (the glue is ~12 KB); the gain levels off well before. */
const MOVES = 20000;
/** The longest run of neighbouring entries moved at once. */
const MAX_RUN = 6;
/** How the import object starts in wasm-bindgen's glue, after terser. */
const START = "__proto__:null,";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/order-glue.mjs GLUE.js");
  process.exit(2);
}
const glue = readFileSync(file, "utf8");
const start = glue.indexOf(START);
if (start < 0 || glue.indexOf(START, start + 1) !== glue.indexOf("{__proto__:null,a:", start) + 1) {
  // The second `__proto__:null` is the one-entry object wasm-bindgen returns ({a: imports}).
  console.error(`[pkg] error: ${file}: the import object was not found where expected`);
  process.exit(1);
}

// Split the object's body at its top-level commas, quoted strings skipped. A template or regular
// expression literal holding a bracket or comma would split wrongly: the checks below refuse it.
const from = start + START.length;
const entries = [];
let depth = 0;
let entry = "";
let end = from;
for (; end < glue.length; end++) {
  const c = glue[end];
  if (c === '"' || c === "'") {
    let q = end + 1;
    while (glue[q] !== c) q += glue[q] === "\\" ? 2 : 1;
    entry += glue.slice(end, q + 1);
    end = q;
    continue;
  }
  if ("([{".includes(c)) depth++;
  if (")]}".includes(c)) {
    if (depth === 0) break;
    depth--;
  }
  if (c === "," && depth === 0) {
    entries.push(entry);
    entry = "";
  } else {
    entry += c;
  }
}
entries.push(entry);
const before = glue.slice(0, from);
const after = glue.slice(end);
const text = (order) => before + order.join(",") + after;
if (text(entries) !== glue) {
  console.error(`[pkg] error: ${file}: the import object's entries do not join back into the file`);
  process.exit(1);
}
for (const e of entries) {
  try {
    new Function(`return {${e}}`);
  } catch {
    console.error(`[pkg] error: ${file}: not an object property: ${e.slice(0, 80)}`);
    process.exit(1);
  }
}

const gzipped = (order) => gzipSync(text(order), { level: 9 }).length;
let order = entries;
let best = gzipped(order);
const first = best;
// A linear congruential generator (glibc's constants): the same moves on every machine.
let seed = 1;
const random = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return Math.floor((seed / 2147483648) * n);
};
for (let m = 0; m < MOVES; m++) {
  const candidate = order.slice();
  const moved = candidate.splice(random(candidate.length), 1 + random(MAX_RUN));
  candidate.splice(Math.min(random(candidate.length), candidate.length), 0, ...moved);
  const size = gzipped(candidate);
  if (size < best) {
    best = size;
    order = candidate;
  }
}
writeFileSync(file, text(order));
console.log(`[pkg] ${entries.length} glue imports ordered for gzip (${first} -> ${best} B)`);
