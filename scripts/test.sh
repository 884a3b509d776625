#!/usr/bin/env bash
# The whole test suite, as README.md states it. Installs what the tests need
# (promtool, from Debian's `prometheus` package) or fails saying how.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing promtool (Debian package prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "error: promtool is required; install it with: sudo apt-get install -y prometheus" >&2
    exit 1
  fi
fi
promtool --version | head -1

# Doc tests first, so the run closes on the main runner's summary.
cargo test --workspace --doc

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; running cargo test (install: cargo install cargo-nextest --locked)"
  cargo test --workspace --no-fail-fast --lib --bins --tests
fi
