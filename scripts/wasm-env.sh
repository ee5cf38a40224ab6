#!/usr/bin/env bash
# Runs a command with the environment a wasm32 build needs, then execs it:
#   scripts/wasm-env.sh cargo build --target wasm32-unknown-unknown
#
# Ordinary path: rustup has the wasm32-unknown-unknown target installed -> nothing to add.
# Fallback path (machines where `rustup target add` cannot download; see ../shared/TOOLCHAIN.md):
# Debian's rustc 1.96 + its std source, std built from source with -Z build-std, linked by
# rustup's rust-lld. The variables stay confined to this one command.
set -euo pipefail
# WASM_ENV_BUILD_STD=1 takes the fallback path even where rustup has the target: the release
# package builds std from source to abort on panic with no message (scripts/build-pkg.sh).
if [ -z "${WASM_ENV_BUILD_STD:-}" ] && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  exec "$@"
fi
if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
  echo "wasm-env: no wasm32 target in rustup and no Debian rust-web toolchain; run 'make setup' first" >&2
  exit 2
fi
lld="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$lld"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
# Clippy for wasm32 must be Debian's (rustup's cannot read a std built by Debian's rustc).
if [ "${1:-}" = cargo ] && [ "${2:-}" = clippy ]; then
  export PATH="/usr/bin:$PATH"
fi
exec "$@"
