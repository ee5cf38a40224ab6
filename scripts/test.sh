#!/usr/bin/env bash
# Runs every check and test, then prints one summary line: "N passed, N failed".
# Each test runner's own counts are added up; fmt and clippy count as one check each.
# Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export CHROME_BIN=${CHROME_BIN:-/usr/bin/chromium}
logdir=$(mktemp -d)
passed=0
failed=0
failures=()

step() { printf '\n==> %s\n' "$*"; }

# One line per test step for the summary at the end (per-engine counts among them).
summary=()

# Adds the counts a runner printed (cargo/libtest, wasm-bindgen-test, node --test).
count() {
  local log=$1 p f
  p=$(grep -E '^test result: ' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
  f=$(grep -E '^test result: ' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
  local np nf
  np=$(grep -E '^# pass [0-9]+' "$log" | awk '{s+=$3} END {print s+0}')
  nf=$(grep -E '^# fail [0-9]+' "$log" | awk '{s+=$3} END {print s+0}')
  echo "$(( ${p:-0} + np )) $(( ${f:-0} + nf ))"
}

# run NAME KIND CMD...: KIND is "check" (counts as one) or "tests" (counts the runner's tests).
run() {
  local name=$1 kind=$2; shift 2
  local log="$logdir/$(echo "$name" | tr ' /' '__').log"
  step "$name"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  SECONDS_STEP=$((SECONDS - t0))
  if [ "$kind" = check ]; then
    if [ "$status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
    return
  fi
  read -r p f < <(count "$log")
  if [ "$status" -ne 0 ]; then
    failures+=("$name")
    # A runner that failed without reporting a failed test (build error, crash) still counts.
    [ "$f" -eq 0 ] && f=1
  fi
  # A test step whose runner reported no test at all did not test anything.
  if [ "$status" -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    failures+=("$name (no tests ran)"); f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
  summary+=("$(printf '%5d passed %3d failed  %s (%ss)' "$p" "$f" "$name" "$SECONDS_STEP")")
}

run "cargo fmt --check" check cargo fmt --all -- --check
run "clippy (native)" check cargo clippy --workspace --all-targets --locked -- -D warnings
run "clippy (wasm32)" check scripts/wasm-env.sh cargo clippy --target wasm32-unknown-unknown -p speech-token-client --all-targets --locked -- -D warnings
run "native tests (engine, broker)" tests cargo test --workspace --locked
run "engine simulation (24 h, 20 seeds)" check cargo run --release --locked --quiet -p speech-token-sim --bin simulate -- --hours 24 --seeds 20
# The same days with each engine's measured hidden-timer throttling (docs/BROWSERS.md).
for engine in chromium-measured firefox webkit; do
  run "engine simulation (24 h, 20 seeds, hidden timers as in $engine)" check \
    cargo run --release --locked --quiet -p speech-token-sim --bin simulate -- --hours 24 --seeds 20 --engine "$engine"
done
run "broker (release build for browser and end-to-end tests)" check cargo build --release --locked -p speech-token-broker

# The browser tests' real-broker cases talk to a dev broker on loopback (URL baked in at compile
# time through SPEECH_TOKEN_TEST_BROKER): one broker for the three engines, so the tests are
# compiled once.
. scripts/test-broker.sh
trap stop_test_broker EXIT
start_test_broker || echo "warning: the real-broker browser tests will fail"

# A test file gets this long in one browser (the runner's default, 20 s, is less than
# web_lifecycle's wait for the shell's 15-s clock check on a slow machine).
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-120}

# The same compiled tests run in each engine (no rebuild): Chromium through chromedriver (with
# webdriver.json's capabilities), Firefox ESR through geckodriver, WebKitGTK through
# WebKitWebDriver, which starts MiniBrowser — it has no headless mode, so it gets an Xvfb display
# (xvfb-run). Each driver is passed on its own command line: wasm-bindgen-test-runner takes the
# first of GECKODRIVER, SAFARIDRIVER, CHROMEDRIVER that is set in the environment.
run "browser tests (wasm-pack test, headless Chromium)" tests \
  scripts/wasm-env.sh wasm-pack test --headless --chrome --mode no-install . --locked
run "browser tests (wasm-pack test, headless Firefox ESR)" tests \
  env -u CHROMEDRIVER scripts/wasm-env.sh wasm-pack test --headless --firefox \
  --geckodriver "$(command -v geckodriver || echo geckodriver-not-installed)" --mode no-install . --locked
run "browser tests (wasm-pack test, WebKitGTK MiniBrowser under Xvfb)" tests \
  env -u CHROMEDRIVER xvfb-run -a -s "-screen 0 1280x1024x24" scripts/wasm-env.sh wasm-pack test --headless --safari \
  --safaridriver /usr/bin/WebKitWebDriver --mode no-install . --locked
stop_test_broker
run "build npm package (pkg/)" check scripts/build-pkg.sh
if ls tests/e2e/*.test.mjs >/dev/null 2>&1; then
  run "end-to-end tests (Playwright + real Speech SDK)" tests \
    env BROKER_BIN=target/release/speech-token-broker node --test --test-concurrency=1 tests/e2e/*.test.mjs
fi
# The cross-engine end-to-end suite (tests/e2e/engines/: demo, real Speech SDK, tabs, hidden-page
# timers and lifecycle) through selenium-webdriver and drivers started by the tests themselves
# (never Selenium Manager). Chromium is covered by the Playwright suite above; it runs only the
# lifecycle measurement here, with chromedriver's timer-throttling switches removed.
run "end-to-end tests (Firefox ESR: selenium-webdriver + geckodriver)" tests \
  env BROKER_BIN=target/release/speech-token-broker E2E_ENGINE=firefox \
  node --test --test-concurrency=1 tests/e2e/engines/*.mjs
run "end-to-end tests (WebKitGTK MiniBrowser under Xvfb: selenium-webdriver + WebKitWebDriver)" tests \
  env BROKER_BIN=target/release/speech-token-broker E2E_ENGINE=webkit \
  xvfb-run -a -s "-screen 0 1280x1024x24" node --test --test-concurrency=1 tests/e2e/engines/*.mjs
run "end-to-end lifecycle measurement (Chromium: selenium-webdriver + chromedriver)" tests \
  env BROKER_BIN=target/release/speech-token-broker E2E_ENGINE=chromium E2E_HIDDEN_MS=130000 \
  node --test --test-concurrency=1 tests/e2e/engines/lifecycle.mjs

echo
echo "per step (tests steps; checks count one each):"
for line in "${summary[@]}"; do echo "  $line"; done
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
rm -rf "$logdir"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
