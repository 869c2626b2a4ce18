#!/usr/bin/env bash
# Instructions per event, publish -> handler, on the in-memory engine and on the tokio mpsc
# baseline, counted by callgrind (repeatable on a noisy machine, unlike timings). Each run goes
# through the runtime benchmark's EVT_CALLGRIND mode (a current-thread runtime); two event counts
# are run and the difference divided, so start-up is left out.
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
bin=$(cargo bench -p event-runtime --bench runtime --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "runtime":
        print(m["executable"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # what events -> total instructions
  EVT_CALLGRIND="$1:$2" valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2" "$bin" \
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
