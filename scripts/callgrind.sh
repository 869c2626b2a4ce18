#!/usr/bin/env bash
# Instructions per event, publish -> handler, on the in-memory engine and on the tokio mpsc
# baseline, and per encode+decode round trip for the envelope codecs against raw serde_json and
# raw prost, and per event with traces off, not sampled and sampled (the telemetry bench), counted
# by callgrind (repeatable on a noisy machine, unlike timings). Each run goes
# through a benchmark's EVT_CALLGRIND mode (the runtime bench on a current-thread runtime, the
# codec bench's routines); two counts are run and the difference divided, so start-up is left
# out.
#
# Usage: scripts/callgrind.sh [small large] (default 2000 6000)
set -euo pipefail
cd "$(dirname "$0")/.."

small="${1:-2000}"
large="${2:-6000}"
if ! command -v valgrind >/dev/null 2>&1; then
  echo "installing valgrind" >&2
  apt-get install -y -q valgrind >/dev/null
fi
bench_bin() { # bench name -> its release executable
  cargo bench -p event-runtime --bench "$1" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1"
}
bin=$(bench_bin runtime)
codec=$(bench_bin codec)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # what events [binary] -> total instructions
  EVT_CALLGRIND="$1:$2" valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2" "${3:-$bin}" \
    >/dev/null 2>"$out/$1-$2.log"
  awk '/^summary:/ {print $2}' "$out/$1-$2"
}

declare -A per_event
for what in mpsc engine; do
  a=$(count "$what" "$small")
  b=$(count "$what" "$large")
  per_event[$what]=$(( (b - a) / (large - small) ))
  echo "$what: $a instructions for $small events, $b for $large: ${per_event[$what]} per event"
done
python3 -c "import sys; e, m = int(sys.argv[1]), int(sys.argv[2]); print(f'in-memory engine, publish -> handler: {e} instructions per event = {e / m:.1f}x the tokio mpsc of structs ({m})')" \
  "${per_event[engine]}" "${per_event[mpsc]}"

# The envelope codecs: one encode + decode of the benchmark's order, ours against the raw library.
declare -A per_trip
for what in json_raw json_envelope proto_raw proto_envelope; do
  a=$(count "$what" 200 "$codec")
  b=$(count "$what" 1200 "$codec")
  per_trip[$what]=$(( (b - a) / 1000 ))
done
for pair in "json serde_json" "proto prost"; do
  set -- $pair
  python3 -c "import sys; e, r = int(sys.argv[1]), int(sys.argv[2]); print(f'{sys.argv[3]} envelope encode+decode: {e} instructions vs raw {sys.argv[4]} {r} = {e / r:.2f}x')" \
    "${per_trip[${1}_envelope]}" "${per_trip[${1}_raw]}" "$1" "$2"
done

# Traces on the in-memory engine: no subscriber, the OpenTelemetry layer sampling nothing,
# sampling everything, and sampling one trace in ten at its root (tests/benches/telemetry.rs).
telemetry=$(cargo bench -p event-tests --bench telemetry --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "telemetry":
        print(m["executable"])')
traced() { # mode events -> total instructions
  EVT_TELEMETRY_MODE="$1" EVT_TELEMETRY_EVENTS="$2" valgrind --tool=callgrind \
    --callgrind-out-file="$out/telemetry-$1-$2" "$telemetry" >/dev/null 2>"$out/telemetry-$1-$2.log"
  awk '/^summary:/ {print $2}' "$out/telemetry-$1-$2"
}
declare -A traced_per_event
for mode in off not_sampled sampled tenth_sampled; do
  a=$(traced "$mode" "$small")
  b=$(traced "$mode" "$large")
  traced_per_event[$mode]=$(( (b - a) / (large - small) ))
done
for mode in not_sampled sampled tenth_sampled; do
  python3 -c "import sys; t, o = int(sys.argv[1]), int(sys.argv[2]); print(f'traces {sys.argv[3]}: {t} instructions per event vs {o} with none = {t / o:.3f}x')" \
    "${traced_per_event[$mode]}" "${traced_per_event[off]}" "$mode"
done
