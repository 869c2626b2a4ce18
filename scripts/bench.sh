#!/usr/bin/env bash
# Every benchmark, each against a baseline measured in the same run, with the real engines
# started as for the tests (scripts/servers.sh): codec and runtime (embedded), NATS JetStream vs
# raw async-nats, Kafka on tansu vs raw rdkafka, PostgreSQL inbox vs a naive loop, and ours on
# NATS vs RustStream, the closest Rust peer (`peers`: crates.io's ruststream, built only for this
# benchmark). Prints the ratios; asserts nothing. Release builds: the first run takes several
# minutes on 2 cores.
#
# Usage: scripts/bench.sh [codec|runtime|callgrind|nats|kafka|postgres_inbox|peers|instances|telemetry|saga ...]
# (default: all). `instances`: 1, 2 and 4 instances of a service on every engine, and failover
# (on Kafka: a member's process SIGKILLed, on tansu and on librdkafka's mock cluster).
# `telemetry`: traces off, not sampled and sampled on the in-memory engine. `saga`: saga
# transitions vs the same transaction by hand (SQLite, PostgreSQL), and timer lateness.
set -euo pipefail
cd "$(dirname "$0")/.."

benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
  benches=(codec runtime callgrind nats kafka postgres_inbox peers instances telemetry saga)
fi
# Only the servers the chosen benchmarks need.
EVT_SERVERS=""
for bench in "${benches[@]}"; do
  case "$bench" in
    nats | peers) EVT_SERVERS="$EVT_SERVERS nats" ;;
    instances) EVT_SERVERS="$EVT_SERVERS nats kafka" ;;
    kafka) EVT_SERVERS="$EVT_SERVERS kafka" ;;
    postgres_inbox | saga) EVT_SERVERS="$EVT_SERVERS postgres" ;;
  esac
done
export EVT_SERVERS

# shellcheck source=scripts/servers.sh
source scripts/servers.sh

for bench in "${benches[@]}"; do
  case "$bench" in
    callgrind)
      echo "== event-runtime: instructions per event (callgrind)" >&2
      scripts/callgrind.sh
      continue
      ;;
    codec | runtime | postgres_inbox) crate=event-runtime ;;
    nats) crate=event-nats ;;
    kafka) crate=event-kafka ;;
    peers) crate=event-bench-peers ;;
    instances | telemetry | saga) crate=event-tests ;;
    *)
      echo "unknown benchmark: $bench (codec, runtime, callgrind, nats, kafka, postgres_inbox, peers, instances, telemetry, saga)" >&2
      exit 2
      ;;
  esac
  echo "== $crate: $bench" >&2
  cargo bench -p "$crate" --bench "$bench"
done
