#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on any crash, property
# failure, timeout or out-of-memory (issue 13, item 8). Installs nothing: scripts/setup.sh puts the
# nightly toolchain and cargo-fuzz in place.
#
#   bash scripts/fuzz.sh                 # every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh url_split jws_parse
#
# Seeds are built at run time from ../shared/vectors and the policy folders (fuzz/seeds.py) into
# fuzz/seeds/; what the fuzzers find is kept in fuzz/corpus/ (both ignored by git, so a local
# corpus keeps growing between runs). A crash leaves its input in fuzz/artifacts/<target>/;
# reproduce it with `cargo +nightly fuzz run -O -s none <target> <file>`, then fix it with a
# regression test in the normal test suite. A local corpus that has grown large (every run
# first replays it, within the time budget) shrinks with
# `cargo +nightly fuzz cmin -O -s none <target>`.
#
# Build flags: -O with fuzz/Cargo.toml's release profile (optimised, debug assertions and
# overflow checks on); no sanitizer (-s none): the project's code has no `unsafe` (forbidden),
# so AddressSanitizer would only slow the runs down; panics, overflows and failed properties are
# what these targets look for.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

seconds=${FUZZ_SECONDS:-20}
vectors="$ROOT/../shared/vectors"
started=$(date +%s)

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain or cargo-fuzz is missing: run scripts/setup.sh" >&2
  exit 1
fi
[ -d "$vectors" ] || { echo "fuzz: the shared vectors are not at $vectors" >&2; exit 1; }

# Longest input per target: a little above what the code under test reads at all (token 8192
# bytes, policies and key sets of a few KB); longer inputs only make mutation slower.
max_len() {
  case "$1" in
    jws_parse | dpop_proof) echo 9000 ;;
    url_split) echo 4096 ;;
    policy_toml | policy_json) echo 32768 ;;
    *) echo 16384 ;;
  esac
}

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== fuzz: seeds from $vectors and the policy folders"
python3 fuzz/seeds.py fuzz/seeds "$vectors" | tail -n 1
echo "== fuzz: build (nightly, cargo fuzz build -O -s none)"
mkdir -p fuzz/logs
build_started=$(date +%s)
if ! cargo +nightly fuzz build -O -s none >fuzz/logs/build.log 2>&1; then
  tail -n 40 fuzz/logs/build.log >&2
  echo "fuzz: build failed (log: fuzz/logs/build.log)" >&2
  exit 1
fi
echo "fuzz: build took $(( $(date +%s) - build_started ))s"

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
  log="fuzz/logs/$target.log"
  if cargo +nightly fuzz run -O -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'DONE *cov: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    echo "fuzz: $target: ok, ${runs:-?} runs in ${seconds}s, coverage ${cov:-?}, corpus $(ls "fuzz/corpus/$target" | wc -l)"
  else
    echo "fuzz: $target: FAILED (log: $log)" >&2
    grep -E -A12 "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
    failed+=("$target")
  fi
done

echo "fuzz: ${#targets[@]} targets in $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
