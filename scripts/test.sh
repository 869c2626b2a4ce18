#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, runs every test of the
# workspace (unit, integration, compile-fail, property, doc tests), and exits non-zero on failure.
# Servers for the real-engine suites (NATS, PostgreSQL, Kafka-compatible) are started here, on free
# loopback ports, once those engines exist; today every test runs on embedded parts.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup toolchain)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

scripts/install-chromium.sh # chromium for event-build's catalog_browser test (it fails without it under CI)

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Unit, integration, compile-fail (trybuild) and property tests.
cargo nextest run --workspace --no-fail-fast
# nextest does not run doc tests; the crate docs' examples are tests too.
cargo test --workspace --doc
