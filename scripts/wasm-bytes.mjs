// The wasm binary format's integers and sections, for the build scripts that edit a module
// after wasm-opt (minify-names.mjs, order-functions.mjs).

/** The unsigned LEB128 integer at `pos` in `bytes`, and the position after it. */
export function leb(bytes, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(byte & 0x80)) return [value, pos];
  }
}

/** `n` as unsigned LEB128 bytes. */
export function uleb(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

/** Every section of the module `bytes`: its id, where it starts (`pos`), its content, its end. */
export function* sections(bytes) {
  for (let pos = 8; pos < bytes.length; ) {
    const id = bytes[pos];
    const [size, start] = leb(bytes, pos + 1);
    yield { id, pos, start, end: start + size };
    pos = start + size;
  }
}
