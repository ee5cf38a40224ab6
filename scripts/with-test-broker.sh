#!/usr/bin/env bash
# Runs a command with the browser tests' dev broker on loopback (scripts/test-broker.sh): what
# `wasm-pack test` needs for tests/web_real_broker.rs when run by hand.
#   scripts/with-test-broker.sh scripts/wasm-env.sh wasm-pack test --headless --chrome --mode no-install .
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || { echo "usage: scripts/with-test-broker.sh COMMAND [ARGS...]" >&2; exit 2; }
. scripts/test-broker.sh
trap stop_test_broker EXIT
start_test_broker
"$@"
