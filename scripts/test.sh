#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, starts the real engines
# (NATS JetStream, PostgreSQL, a Kafka-compatible broker: see scripts/servers.sh), runs every test
# of the workspace (unit, integration, compile-fail, property, doc tests) against them, fuzzes
# the decoders for a bounded time (scripts/fuzz.sh), stops them, and exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# A full disk fails whichever build comes last (the compile-fail suite builds its own 4 GB
# target/tests/trybuild), far from the cause: say how much there is, and warn when a cold run
# (about 10 GB of target/ on 2026-12-05) may not fit. Only a warning: a failing df stops nothing.
target_dir="${CARGO_TARGET_DIR:-target}"
free_kb="$(df -Pk "$(dirname "$target_dir")" 2>/dev/null | awk 'NR == 2 {print $4}')" || true
if [[ "$free_kb" =~ ^[0-9]+$ ]]; then
  echo "disk: $((free_kb / 1024 / 1024)) GB free for ${target_dir}" >&2
  if ((free_kb < 12 * 1024 * 1024)); then
    echo "warning: less than 12 GB free; a cold run's target/ takes about 10 GB" >&2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup toolchain)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

# shellcheck source=scripts/servers.sh
source scripts/servers.sh

scripts/install-chromium.sh # chromium for event-build's catalog_browser test (it fails without it under CI)
scripts/install-asyncapi-parser.sh # @asyncapi/parser for event-build's AsyncAPI validation (likewise)
# kafka-python, the foreign Kafka producer of event-kafka's tests (likewise).
python3 -c "import kafka" 2>/dev/null || python3 -m pip install --quiet kafka-python==3.0.12 >&2 \
  || echo "warning: pip could not install kafka-python" >&2

# --- Tests ---------------------------------------------------------------------------------------

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# One build per run: incremental state would only fill the disk (it once took 33 GB of target/).
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
# The runtime's features are additive: every supported combination builds on its own.
for features in "" "derive" "sqlite" "postgres" "sqlite,postgres" "http" "otel" "prometheus"; do
  echo "checking event-runtime with features [${features}]" >&2
  cargo check -q -p event-runtime --lib --no-default-features --features "$features"
done
# Two versions of an OpenTelemetry crate in one build export nothing, silently.
otel_twice="$(cargo tree -d --workspace -e normal,dev | grep -E '^(opentelemetry[a-z_-]*|tracing-opentelemetry) v' || true)"
if [ -n "$otel_twice" ]; then
  echo "two versions of an OpenTelemetry crate (cargo tree -d):" >&2
  echo "$otel_twice" >&2
  exit 1
fi
# Unit, integration, compile-fail (trybuild) and property tests.
cargo nextest run --workspace --no-fail-fast
# nextest does not run doc tests; the crate docs' examples are tests too.
cargo test --workspace --doc
# Every decoder a record goes through, fuzzed for a bounded time per target (scripts/fuzz.sh;
# EVT_FUZZ_SECONDS=0 skips it). Fails on any panic, sanitizer report or oversized allocation.
fuzz_seconds="${EVT_FUZZ_SECONDS:-15}"
if ((fuzz_seconds > 0)); then
  scripts/fuzz.sh "$fuzz_seconds"
fi
