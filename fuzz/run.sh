#!/usr/bin/env bash
# Builds the cargo-fuzz (libFuzzer) targets and runs each for N seconds (default 60):
#   fuzz/run.sh [seconds] [target...]
# The seed corpus in fuzz/corpus/<target>/ is read but not changed: new inputs go to a scratch
# directory (set KURA_FUZZ_MERGE=1 to merge the interesting ones back into the corpus).
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the script; turn such an input
# into a regression by copying it to fuzz/corpus/<target>/regression-<name> (tests/fuzz_corpus.rs
# replays every corpus file on the stable toolchain).
#
# libFuzzer needs nightly rustc flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the default (stable)
# toolchain accept them, so no nightly toolchain is required.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(digest name reference range content_range manifest)
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

echo "== building fuzz targets (release, AddressSanitizer)"
cargo fuzz build -O

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "corpus/$t"
    log="$scratch/$t.log"
    echo "== fuzz $t for ${secs}s"
    if ! cargo fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $t FAILED; crashing input(s): $(ls artifacts/"$t"/ 2>/dev/null | tr '\n' ' ')"
        exit 1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*' || echo '?')"
    summary+=("$t: $execs executions in ${secs}s, coverage $cov edges, 0 crashes")
    if [ "${KURA_FUZZ_MERGE:-0}" = 1 ]; then
        cargo fuzz run -O "$t" "corpus/$t" "$scratch/$t" -- -merge=1 >/dev/null 2>&1
    fi
done
printf '%s\n' "${summary[@]}"
