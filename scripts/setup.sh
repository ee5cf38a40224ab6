#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need. Idempotent: quiet and fast when
# all is present. Everything comes from package registries (Debian, crates.io, npm); nothing
# downloads a browser, driver or toolchain from anywhere else.
#
#   scripts/setup.sh            # everything
#   scripts/setup.sh --no-browser
set -euo pipefail
cd "$(dirname "$0")/.."

browser=1
[ "${1:-}" = "--no-browser" ] && browser=0

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
command -v node >/dev/null || die "node not found: install Node.js 20 or newer"
command -v npm >/dev/null || die "npm not found: install Node.js 20 or newer"

# WebKitGTK ships MiniBrowser (the browser WebKitWebDriver starts) outside PATH.
webkit_minibrowser() {
  local f
  for f in /usr/lib/*/webkit2gtk-4.1/MiniBrowser /usr/libexec/webkit2gtk-4.1/MiniBrowser; do
    [ -x "$f" ] && { echo "$f"; return; }
  done
}

wasm_target_installed() {
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown
}

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them with your package manager"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ $apt_updated -eq 0 ]; then
    say "apt-get update"
    $sudo apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  say "installing Debian packages: ${missing[*]} (this can take a few minutes)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" \
    | grep -E '^(Setting up|Unpacking) ' | sed 's/^/[setup]   /' >&2 || true
  for pkg in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || die "could not install $pkg"
  done
}

# 1. The wasm32 toolchain: rustup's target if present, else Debian's Rust + std source (build-std).
if ! wasm_target_installed; then
  # `rustup target add` cannot download on machines without internet beyond the package
  # registries; Debian's rustc-web carries a complete Rust with its std source instead.
  apt_install rustc-web cargo-web rust-web-src rust-web-clippy
  lld="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
  [ -x "$lld" ] || die "rustup's rust-lld not found at $lld"
fi

# 2. The three browser engines and their WebDriver servers, from Debian (never a downloaded
#    browser build): Chromium + chromedriver; Firefox ESR (its geckodriver comes from crates.io,
#    step 3: Debian has no package); WebKitGTK's WebKitWebDriver, which drives WebKitGTK's
#    MiniBrowser (no headless mode: it runs under Xvfb, hence xvfb + xauth for xvfb-run).
#    Installed in one apt-get call (~1 minute on a fresh machine).
if [ $browser -eq 1 ]; then
  engines=()
  { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || engines+=(chromium chromium-driver)
  command -v firefox-esr >/dev/null || engines+=(firefox-esr)
  [ -x /usr/bin/WebKitWebDriver ] || engines+=(webkit2gtk-driver)
  { command -v xvfb-run >/dev/null && command -v xauth >/dev/null; } || engines+=(xvfb xauth)
  if [ ${#engines[@]} -gt 0 ]; then
    say "browser engines for the tests (Chromium, Firefox ESR, WebKitGTK + Xvfb)"
    apt_install "${engines[@]}"
  fi
  [ -x "$(webkit_minibrowser)" ] || die "WebKitGTK's MiniBrowser not found (package libwebkit2gtk-4.1-0)"
fi

# 3. wasm-bindgen CLI at exactly the version in Cargo.lock, and wasm-pack, from crates.io.
cargo_install() {
  local log
  log=$(mktemp)
  say "cargo install $* (compiles from source: a few minutes)"
  ( while sleep 30; do say "  ... $(grep -c Compiling "$log" 2>/dev/null || echo 0) crates compiled"; done ) &
  local ticker=$!
  # --locked first (reproducible); the registry may lack a pinned transitive version.
  if ! cargo install --locked "$@" >"$log" 2>&1; then
    say "  --locked failed ($(grep -m1 '^error' "$log" || true)); retrying with fresh resolution"
    cargo install "$@" >"$log" 2>&1 || { kill $ticker 2>/dev/null; tail -20 "$log" >&2; rm -f "$log"; die "cargo install $* failed"; }
  fi
  kill $ticker 2>/dev/null || true
  grep -E '^\s+Installed' "$log" | sed 's/^ */[setup]   /' >&2 || true
  rm -f "$log"
}
bindgen_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
[ -n "$bindgen_version" ] || die "cannot read the wasm-bindgen version from Cargo.lock"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  cargo_install wasm-bindgen-cli --version "$bindgen_version"
  [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$bindgen_version" ] \
    || die "wasm-bindgen-cli $bindgen_version did not install"
fi
if ! command -v wasm-pack >/dev/null; then
  cargo_install wasm-pack
  command -v wasm-pack >/dev/null || die "wasm-pack did not install"
fi
# geckodriver: Firefox's WebDriver server (crates.io; ~2 minutes to compile on 2 cores).
if [ $browser -eq 1 ] && ! command -v geckodriver >/dev/null; then
  cargo_install geckodriver
  command -v geckodriver >/dev/null || die "geckodriver did not install"
fi

# 4. Node packages (Speech SDK, Playwright driver library, binaryen's wasm-opt, TypeScript, Vite).
#    package.json pins rollup (an `overrides` entry) to a version whose platform packages the
#    registry serves for every platform; otherwise the lock file misses optional entries and
#    `npm ci` refuses it.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed"
fi
exit 0
