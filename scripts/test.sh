#!/usr/bin/env bash
# The whole test suite, as README.md states it. Installs what the tests need
# (promtool and prometheus, amtool and alertmanager, docker-compose, from Debian) or
# fails saying how.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tool -> Debian package. promtool and prometheus come with `prometheus`, amtool and
# prometheus-alertmanager with `prometheus-alertmanager`; docker-compose validates
# monitoring/docker-compose.yaml (no Docker daemon needed); curl is what scripts/soak.sh
# (run by tests/tests/soak.rs) samples /metrics with.
missing=()
for pair in promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
            prometheus-alertmanager:prometheus-alertmanager docker-compose:docker-compose \
            curl:curl; do
  tool=${pair%%:*} package=${pair#*:}
  if ! command -v "$tool" >/dev/null 2>&1; then
    case " ${missing[*]-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: the tests need ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
promtool --version | head -1
amtool --version 2>&1 | head -1
docker-compose version 2>&1 | head -1

# The example binaries the monitoring tests start (tests/src/stack.rs, `example_binary`
# runs the same command): built once here, not inside a test's time budget.
echo "== building the example binaries the monitoring tests run"
cargo build --quiet --bins -p zerostate-node -p ains-api

# Doc tests first, so the run closes on the main runner's summary.
cargo test --workspace --doc

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; running cargo test (install: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast --lib --bins --tests
fi
