#!/usr/bin/env bash
# Fuzzes every decoder a record goes through, for a bounded time per target (fuzz/: binary-mode
# headers, the JSON and protobuf event formats, stored records, upcasters; docs/delivery.md).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]      (default: 20 s, every target)
#
# Installs cargo-fuzz if it is missing, builds the targets (libFuzzer with AddressSanitizer, on
# stable Rust through RUSTC_BOOTSTRAP=1: cargo-fuzz passes nightly-only flags), and runs each
# target from the committed seeds (fuzz/corpus/<target>, read only) plus the corpus it has grown
# so far ($EVT_FUZZ_CORPUS/<target>, default $HOME/.cache/evt-fuzz/corpus, kept between runs).
# A panic, a sanitizer report, an input slower than 10 s, an allocation of 512 MiB or more, or
# an RSS over 2 GiB is a finding: the script stops at the first one, prints the artifact's path
# and the input in base64, and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
all=(binary_headers structured_json protobuf record upcast)
if (($#)); then targets=("$@"); else targets=("${all[@]}"); fi
grown="${EVT_FUZZ_CORPUS:-$HOME/.cache/evt-fuzz/corpus}"

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz --version 0.13.2
fi

cd fuzz
echo "building the fuzz targets" >&2
cargo fuzz build

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$grown/$target"
  # libFuzzer adds files and never removes them: past 10,000 the kept corpus is minimized (the
  # smallest set of its inputs with the same coverage), so loading it stays a few seconds.
  if (($(find "$grown/$target" -type f | wc -l) > 10000)); then
    echo "minimizing the kept corpus of $target" >&2
    cargo fuzz cmin "$target" "$grown/$target" -- -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1 ||
      { tail -n 20 "$log" >&2; exit 1; }
  fi
  echo "fuzzing $target for ${seconds}s" >&2
  status=0
  cargo fuzz run "$target" "$grown/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -dict=cloudevents.dict -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' "$log" >&2 || true
  if ((status != 0)); then
    tail -n 60 "$log" >&2
    echo "fuzz target $target FAILED (exit $status)" >&2
    # libFuzzer: "Test unit written to ./artifacts/<target>/crash-<sha1>" (or leak-, oom-, timeout-).
    while read -r artifact; do
      [[ "$artifact" == /* ]] || artifact="$PWD/${artifact#./}"
      echo "artifact: $artifact" >&2
      if [[ -f "$artifact" ]]; then
        echo "input (base64): $(base64 -w0 "$artifact")" >&2
      fi
    done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    echo "reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target <artifact>" >&2
    exit 1
  fi
done
echo "fuzzing: no findings in ${targets[*]} (${seconds}s each)" >&2
