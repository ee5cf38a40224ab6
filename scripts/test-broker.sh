# Sourced (not run): start_test_broker starts the browser tests' dev broker
# (target/release/speech-token-broker) on a free loopback port and exports its URL as
# SPEECH_TOKEN_TEST_BROKER (tests/web_real_broker.rs reads it at compile time);
# stop_test_broker stops it. Used by scripts/test.sh and scripts/with-test-broker.sh.
start_test_broker() {
  local broker=target/release/speech-token-broker
  if [ ! -x "$broker" ]; then
    echo "error: $broker is missing: build it first (cargo build --release -p speech-token-broker)" >&2
    return 1
  fi
  test_broker_logs=$(mktemp -d)
  "$broker" --listen 127.0.0.1:0 --rate-limit 0 >"$test_broker_logs/out" 2>"$test_broker_logs/err" &
  test_broker_pid=$!
  for _ in $(seq 100); do grep -q '^listening on ' "$test_broker_logs/out" 2>/dev/null && break; sleep 0.1; done
  SPEECH_TOKEN_TEST_BROKER=$(sed -n 's/^listening on //p' "$test_broker_logs/out")
  export SPEECH_TOKEN_TEST_BROKER
  if [ -z "$SPEECH_TOKEN_TEST_BROKER" ]; then
    echo "error: the test broker did not start: $(cat "$test_broker_logs/err")" >&2
    return 1
  fi
  echo "[test broker] $SPEECH_TOKEN_TEST_BROKER" >&2
}

# Safe under `set -e` (it runs in EXIT traps): a broker that already exited is no error.
stop_test_broker() {
  if [ -n "${test_broker_pid:-}" ]; then kill "$test_broker_pid" 2>/dev/null || true; fi
  if [ -n "${test_broker_logs:-}" ]; then rm -rf "$test_broker_logs"; fi
  test_broker_pid= test_broker_logs=
}
