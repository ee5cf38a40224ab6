#!/usr/bin/env bash
# `make bench`: measures size, hot path, cold start, single flight, refresh lifecycle, memory and
# the reference broker against peers in the same run; prints a table and writes BENCHMARKS.md.
# Expects pkg/ to be built (make bench does that first; by hand: bash scripts/build-pkg.sh).
# Loopback only; bounded in time (BENCH_TIMEOUT seconds for the browser/broker part, default
# 480). BENCH_QUICK=1 runs fewer rounds. No duration is asserted: this is not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bench] %s\n' "$*" >&2; }
start=$(date +%s)
work=target/bench
rm -rf "$work"
mkdir -p "$work"

[ -f pkg/speech_token_client_bg.wasm ] && [ -f pkg/speech_token_client.js ] \
  || { say "error: pkg/ is not built: run 'make bench' or 'bash scripts/build-pkg.sh'"; exit 1; }
[ -x /usr/bin/chromium ] || [ -n "${CHROMIUM:-}" ] || { say "error: no /usr/bin/chromium: run 'make setup'"; exit 1; }
[ -d node_modules/playwright-core ] || { say "error: node_modules/ missing: run 'make setup' (npm ci)"; exit 1; }
for peer in @auth0/auth0-spa-js @azure/msal-browser oidc-client-ts; do
  [ -d "node_modules/$peer" ] || { say "installing the size peers (npm ci)"; npm ci --no-audit --no-fund >&2; break; }
done

# wrk (Debian) for the broker's throughput and latency.
if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk (apt-get)"
  if [ "$(id -u)" -eq 0 ]; then
    { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; }; } \
      || say "warning: could not install wrk: broker throughput will not be measured"
  else
    say "warning: wrk missing and not root: broker throughput will not be measured"
  fi
fi

# A snapshot of pkg/ so that a concurrent rebuild cannot change the files mid-run.
cp -r pkg "$work/pkg"

say "building the broker (release)"
cargo build --release --quiet --locked -p speech-token-broker
cp target/release/speech-token-broker "$work/speech-token-broker"
say "building the relay load generator (release)"
cargo build --release --quiet --locked -p speech-token-broker --example relay_load
cp target/release/examples/relay_load "$work/relay_load"

say "engine simulation: 24 h x 20 seeds, normal and worst-case throttling (cargo run --release -p speech-token-sim --bin simulate)"
cargo run --release --quiet --locked -p speech-token-sim --bin simulate -- --hours 24 --seeds 20 --json >"$work/sim.json"
cargo run --release --quiet --locked -p speech-token-sim --bin simulate -- --hours 24 --seeds 20 --json --worst-case-throttling >"$work/sim-worst.json"

# Per-crate size breakdown needs function names: rebind the release wasm (built by
# build-pkg.sh) keeping them, optimise like build-pkg.sh but with --debuginfo.
crates_arg=()
raw=target/wasm32-unknown-unknown/release/speech_token_client.wasm
if [ -f "$raw" ] && command -v wasm-bindgen >/dev/null 2>&1 && [ -x node_modules/.bin/wasm-opt ]; then
  say "per-crate size breakdown (wasm-bindgen --keep-debug, wasm-opt -Os -ocimfs=15 --debuginfo: build-pkg.sh's flags, its function order aside)"
  if wasm-bindgen --target web --keep-debug --out-dir "$work/named" "$raw" >&2 \
    && node_modules/.bin/wasm-opt -Os -ocimfs=15 $(cat scripts/wasm-features.txt) --debuginfo \
         "$work/named/speech_token_client_bg.wasm" -o "$work/named/named.wasm" \
    && python3 scripts/wasm-size.py "$work/named/named.wasm" --json >"$work/crates.json"; then
    crates_arg=(--crates "$work/crates.json")
  else
    say "warning: the named wasm could not be built: no per-crate breakdown"
  fi
else
  say "warning: $raw, wasm-bindgen or wasm-opt missing: no per-crate breakdown"
fi

# The package without cross-tab sharing (issue 19), built last: it replaces the raw release wasm
# (pkg/ and its snapshot are untouched). Its breakdown as above.
solo_arg=()
say "package without cross-tab (PKG_CARGO_ARGS=--no-default-features scripts/build-pkg.sh)"
if PKG_CARGO_ARGS=--no-default-features bash scripts/build-pkg.sh "$work/pkg-solo" >&2; then
  solo_arg=(--pkg-solo "$work/pkg-solo")
  if [ ${#crates_arg[@]} -gt 0 ] \
    && wasm-bindgen --target web --keep-debug --out-dir "$work/named-solo" "$raw" >&2 \
    && node_modules/.bin/wasm-opt -Os -ocimfs=15 $(cat scripts/wasm-features.txt) --debuginfo \
         "$work/named-solo/speech_token_client_bg.wasm" -o "$work/named-solo/named.wasm" \
    && python3 scripts/wasm-size.py "$work/named-solo/named.wasm" --json >"$work/crates-solo.json"; then
    solo_arg+=(--crates-solo "$work/crates-solo.json")
  fi
else
  say "warning: the package without cross-tab could not be built"
fi

quick=()
[ -n "${BENCH_QUICK:-}" ] && quick=(--quick)
say "prepared in $(( $(date +%s) - start )) s; measuring (browser, broker)"
timeout --kill-after=10 "${BENCH_TIMEOUT:-480}" node bench/run.mjs \
  --pkg "$work/pkg" --broker "$work/speech-token-broker" --relay-load "$work/relay_load" \
  --sim "$work/sim.json" --sim-worst "$work/sim-worst.json" "${crates_arg[@]}" "${solo_arg[@]}" "${quick[@]}" \
  --out BENCHMARKS.md --json "$work/results.json"
say "done in $(( $(date +%s) - start )) s"
