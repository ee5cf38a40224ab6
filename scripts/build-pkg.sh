#!/usr/bin/env bash
# Builds the npm package into pkg/ (or $1):
#   pkg/           the `web` target: plain <script type="module"> + `await init()`; what webpack 5,
#                  `vite build` and Parcel use (they bundle the wasm through `new URL(..., import.meta.url)`)
#   pkg/inline/    the same glue with the wasm embedded: what esbuild, Rollup, Vite's dev server and
#                  Node get (package.json "exports" conditions; see scripts/pkg-variants.mjs)
#   pkg/bundler/   `speech-token-client/bundler`: the same, initialised on import (no init())
# wasm-pack (release) -> wasm-opt -Os (names minified; functions laid out for gzip) -> terser on the JS glue (imports ordered for gzip) -> scripts/pkg-variants.mjs; then
# the npm metadata of pkg.json is merged into pkg/package.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-pkg}
opt=node_modules/.bin/wasm-opt
terser=node_modules/.bin/terser
[ -x "$opt" ] && [ -x "$terser" ] || { echo "[pkg] error: node_modules missing: run 'make setup' (npm ci)" >&2; exit 1; }

# Panic locations would otherwise embed this machine's paths (home folder, checkout) in the
# shipped binary: map them to neutral prefixes.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$cargo_home/registry/src=/crates --remap-path-prefix=$PWD=/speech-token-client --remap-path-prefix=/usr/lib/rustlib/src/rust=/rust"

# --- size (issue 19) ---------------------------------------------------------------------------
# Where Debian's Rust and its std source are installed (scripts/wasm-env.sh's fallback path),
# build std from source and abort on panic with no message and no formatting machinery at all
# (`panic = immediate-abort`: a panic is a bug, and the shipped module carries none of the panic
# strings or `core::fmt` it would need). Elsewhere: rustup's prebuilt std (a larger module).
if [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
  export WASM_ENV_BUILD_STD=1
  RUSTFLAGS="$RUSTFLAGS -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none"
  # JS values live in the glue's heap array instead of a wasm externref table: rustc's default
  # (reference types) makes wasm-bindgen add an externref shim per export and import that takes
  # or returns a JS value, ~1 KB of gzipped package more (step 13 of bench/size-steps.md). Only
  # with std built from source: a prebuilt std keeps reference types, and wasm-bindgen then
  # refuses the mix. The e2e tests run this package; `wasm-pack test` builds the default.
  RUSTFLAGS="$RUSTFLAGS -Ctarget-feature=-reference-types"
fi
# Extra cargo arguments, e.g. PKG_CARGO_ARGS="--no-default-features" for a build without
# cross-tab sharing (scripts/bench.sh measures it).
read -r -a cargo_args <<<"${PKG_CARGO_ARGS:-}"
# -----------------------------------------------------------------------------------------------

build() { # build TARGET DIR
  local target=$1 dir=$2
  echo "[pkg] wasm-pack build --target $target --release -> $dir/"
  scripts/wasm-env.sh wasm-pack --log-level warn build . --target "$target" --mode no-install --release \
    --out-dir "$dir" --out-name speech_token_client ${cargo_args[@]+-- "${cargo_args[@]}"} 2>&1 | grep -vE 'failed to get wasm-pack version|LICENSE' || true
  local wasm="$dir/speech_token_client_bg.wasm"
  [ -f "$wasm" ] || { echo "[pkg] error: $wasm was not built" >&2; exit 1; }
  local before
  before=$(wc -c <"$wasm")
  # Exactly the features rustc >= 1.87 emits. Not --all-features: with it wasm-opt rewrites
  # externref into stringref, which browsers do not support (the module then fails to compile).
  # Import and export names minified (wasm-bindgen's carry 16 hex digits or a whole Rust type
  # each), the glue renamed to match by scripts/minify-names.mjs; the mapping stays in target/.
  local names=${CARGO_TARGET_DIR:-target}/wasm-names-$target.json
  mkdir -p "$(dirname "$names")"
  # -Os with functions of one caller inlined only when tiny (-ocimfs, binaryen's default: any
  # size): inlining them all into the few big async state machines gives a smaller raw module
  # that gzips worse (-1.7 KB gzip against -Oz; step 24 of bench/size-steps.md, swept 0-300).
  "$opt" -Os -ocimfs=15 $(cat scripts/wasm-features.txt) --strip-debug --strip-producers --strip-target-features \
    --minify-imports-and-exports-and-modules "$wasm" -o "$wasm.opt" >"$names"
  mv "$wasm.opt" "$wasm"
  # The code laid out for gzip (by function size, then a bounded search), then -Os once more
  # over the new layout: scripts/order-functions.mjs says why.
  node scripts/order-functions.mjs "$wasm"
  "$opt" --reorder-functions-by-name -Os -ocimfs=15 $(cat scripts/wasm-features.txt) --strip-debug \
    "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"
  # `new TokenClient()` before `await init()`: a clear error instead of a TypeError.
  if [ "$target" = web ]; then node scripts/guard-init.mjs "$dir/speech_token_client.js"; fi
  node scripts/minify-names.mjs "$names" "$wasm" "$dir/speech_token_client.js" \
    "$dir/speech_token_client_bg.wasm.d.ts" "$dir/speech_token_client.d.ts"
  # The generated JS glue ships to every browser as is: minify it (exports, import.meta kept).
  # ES2020 output (the glue itself needs ES2021: FinalizationRegistry); `unsafe_arrows` turns
  # the ~150 import functions into arrows: none uses `this` or is called with `new`.
  for js in "$dir"/speech_token_client.js "$dir"/speech_token_client_bg.js; do
    [ -f "$js" ] || continue
    "$terser" "$js" --module --ecma 2020 --compress passes=2,arrows=true,unsafe_arrows=true --mangle -o "$js.min"
    mv "$js.min" "$js"
  done
  # The import object's entries in the order that gzips best (scripts/order-glue.mjs says why).
  node scripts/order-glue.mjs "$dir/speech_token_client.js" "$wasm"
  local glue=0
  for js in "$dir"/*.js; do glue=$((glue + $(gzip -9c "$js" | wc -c))); done
  echo "[pkg] $target: wasm $before -> $(wc -c <"$wasm") bytes ($(gzip -9c "$wasm" | wc -c) gzip); JS glue $glue gzip"
}

rm -rf "$out/bundler" "$out/inline"
build web "$out"
node scripts/pkg-variants.mjs "$out"
node scripts/merge-pkg-json.mjs "$out"
