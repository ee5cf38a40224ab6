// Names every function defined in a wasm module after its place in a layout chosen for gzip, in
// a "name" section appended to the file, so that `wasm-opt --reorder-functions-by-name` then lays
// the code section out in that order (scripts/build-pkg.sh; the names are stripped after).
//
// Why: gzip finds repeats only within its 32 KB window, so where a function lands decides how
// much of it compresses; the layout alone moves the package by +-1 KB (bench/size-steps.md).
// 1. By body size, smallest first: functions of like size are alike (the many small import
//    shims and closure invokers side by side, the big state machines together): -0.27 KB of
//    gzipped wasm against binaryen's order (step 30). binaryen has no pass that orders by size;
//    it can order by name.
// 2. Then a local search from that layout (step 37): move a run of 1-8 functions elsewhere, keep
//    the move when the module deflates smaller (Node's bundled zlib at level 9: deflate, as
//    `gzip -9` is, though not the same implementation). Deterministic for a given Node (a fixed
//    pseudo-random sequence; another build of zlib may keep other moves, so the layout, never
//    the code, can differ between Node versions) and bounded by ORDER_SEARCH_MOVES (default
//    below; 0 keeps the size order). Measured on the shipped module: -0.35 KB gzip -9, -0.33 KB
//    gzip -6, -0.03 KB brotli (whose window is large enough that order hardly matters); the raw
//    module is the same size. A call's callee index is not rewritten during the search: the
//    estimate is of the bodies as they are, and build-pkg.sh measures the result for real.
//
// Usage: node scripts/order-functions.mjs MODULE.wasm   (rewrites MODULE.wasm in place)

import { readFileSync, writeFileSync } from "node:fs";
import { deflateRawSync } from "node:zlib";
import { searchLayout } from "./layout-search.mjs";
import { leb, sections, uleb } from "./wasm-bytes.mjs";

/** Moves tried by the search: ~3 ms each on this module (the whole module deflated per move).
 * The gain slows down well before 20 000 (on the step-41 module, by the estimate: -0.32 KB at
 * 5 000 moves, -0.52 KB at 20 000; 40 000 gave 45 B more of real gzip on the step-37 one). */
const DEFAULT_MOVES = 20000;
/** The longest run of neighbouring functions moved at once. */
const MAX_RUN = 8;

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
const bodies = [];
let code;
for (const { id, start, end } of sections(wasm)) {
  if (id === 0 && wasm.toString("latin1", start + 1, start + 5) === "name" && wasm[start] === 4) {
    throw new Error(`${file} already has a name section: strip it first (wasm-opt --strip-debug)`);
  }
  if (id === 10) {
    code = { start, end };
    let [count, p] = leb(wasm, start);
    for (let i = 0; i < count; i++) {
      const [len, q] = leb(wasm, p);
      sizes.push(len);
      bodies.push(wasm.subarray(p, q + len));
      p = q + len;
    }
  }
}

// 1. By size.
const bySize = sizes
  .map((size, i) => [size, i])
  .sort((a, b) => a[0] - b[0] || a[1] - b[1])
  .map(([, i]) => i);

// 2. The search.
const moves = Number(process.env.ORDER_SEARCH_MOVES || DEFAULT_MOVES);
if (!Number.isInteger(moves) || moves < 0) {
  console.error(`ORDER_SEARCH_MOVES must be a whole number, not ${process.env.ORDER_SEARCH_MOVES}`);
  process.exit(2);
}
const before = wasm.subarray(0, code.start);
const after = wasm.subarray(code.end);
const deflated = (layout) =>
  deflateRawSync(Buffer.concat([before, ...layout.map((i) => bodies[i]), after]), { level: 9 })
    .length;
const { order, first, best } = searchLayout(bySize, deflated, {
  moves,
  maxRun: MAX_RUN,
  progress: (m, from, to) => console.log(`[pkg] layout search: ${m}/${moves} moves, ${from} -> ${to} B`),
});

const rank = new Array(sizes.length);
order.forEach((i, r) => (rank[i] = r));
const width = String(sizes.length).length;
const entries = [...uleb(sizes.length)];
for (let i = 0; i < sizes.length; i++) {
  const name = Buffer.from(String(rank[i]).padStart(width, "0"));
  entries.push(...uleb(importedFunctions + i), ...uleb(name.length), ...name);
}
const body = [...uleb(4), ...Buffer.from("name"), 1, ...uleb(entries.length), ...entries];
writeFileSync(file, Buffer.concat([wasm, Buffer.from([0, ...uleb(body.length), ...body])]));
console.log(
  `[pkg] ${sizes.length} functions laid out by size, then by ${moves} moves of search ` +
    `(deflated ${first} -> ${best} B), named for --reorder-functions-by-name`,
);
