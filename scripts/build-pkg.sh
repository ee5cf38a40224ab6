#!/usr/bin/env bash
# Builds the npm package into pkg/: wasm-pack (web target, release), wasm-opt -Oz, and the npm
# metadata of pkg.json merged into the generated package.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-pkg}
target=${2:-web}
# Panic locations would otherwise embed this machine's paths (home folder, checkout) in the
# shipped binary: map them to neutral prefixes.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$cargo_home/registry/src=/crates --remap-path-prefix=$PWD=/speech-token-client --remap-path-prefix=/usr/lib/rustlib/src/rust=/rust"
echo "[pkg] wasm-pack build --target $target --release -> $out/"
scripts/wasm-env.sh wasm-pack --log-level warn build . --target "$target" --mode no-install --release \
  --out-dir "$out" --out-name speech_token_client 2>&1 | grep -vE 'failed to get wasm-pack version|LICENSE' || true
wasm="$out/speech_token_client_bg.wasm"
[ -f "$wasm" ] || { echo "[pkg] error: $wasm was not built" >&2; exit 1; }
opt=node_modules/.bin/wasm-opt
[ -x "$opt" ] || { echo "[pkg] error: $opt missing: run 'make setup' (npm ci)" >&2; exit 1; }
before=$(wc -c <"$wasm")
# Exactly the features rustc >= 1.87 emits. Not --all-features: with it wasm-opt rewrites
# externref into stringref, which browsers do not support (the module then fails to compile).
"$opt" -Oz $(cat scripts/wasm-features.txt) --strip-debug --strip-producers "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
# The generated JS glue ships to every browser as is: minify it (exports and import.meta kept).
glue="$out/speech_token_client.js"
node_modules/.bin/terser "$glue" --module --compress passes=2 --mangle -o "$glue.min"
mv "$glue.min" "$glue"
node scripts/merge-pkg-json.mjs "$out"
echo "[pkg] $wasm: $before -> $(wc -c <"$wasm") bytes ($(gzip -9c "$wasm" | wc -c) gzip); glue $(gzip -9c "$out/speech_token_client.js" | wc -c) gzip"
