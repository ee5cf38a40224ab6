// The layout search shared by order-functions.mjs (the wasm code section) and order-glue.mjs
// (the glue's import object): gzip finds repeats only within its 32 KB window, so the order of
// independent pieces changes the compressed size, not the meaning.

/**
 * Improves `order` (an array of pieces) by `moves` tries: move a run of 1..`maxRun` neighbouring
 * pieces elsewhere, keep the move when `size(candidate)` is smaller. Deterministic: the moves
 * come from a fixed pseudo-random sequence, so the same input gives the same order (for a given
 * `size`, e.g. a given Node's zlib). `progress(move, first, best)` is called every 5 000 moves.
 * Returns the order kept, and the sizes before and after.
 */
export function searchLayout(order, size, { moves, maxRun, progress = () => {} }) {
  let best = size(order);
  const first = best;
  // A linear congruential generator (glibc's constants), computed exactly in 32-bit integer
  // arithmetic: the same moves on every machine.
  let seed = 1;
  const random = (n) => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return Math.floor((seed / 2147483648) * n);
  };
  for (let m = 1; m <= moves; m++) {
    const from = random(order.length);
    const run = 1 + random(maxRun);
    const to = random(order.length);
    const candidate = order.slice();
    const moved = candidate.splice(from, run);
    candidate.splice(Math.min(to, candidate.length), 0, ...moved);
    const candidateSize = size(candidate);
    if (candidateSize < best) {
      best = candidateSize;
      order = candidate;
    }
    if (m % 5000 === 0) progress(m, first, best);
  }
  return { order, first, best };
}
