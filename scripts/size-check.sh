#!/usr/bin/env bash
# Size budget of the deployable bundle (issue 7): builds the Worker with the default policies
# (skip with SIZE_CHECK_NO_BUILD=1 to measure build/ as it is), bundles it the way
# `wrangler deploy` does (--dry-run, offline, no account), prints its raw and gzip size, and
# fails when the gzip size exceeds the budget.
#
#   bash scripts/size-check.sh                        # budget from BUDGET_GZIP_BYTES below
#   SIZE_BUDGET_GZIP_BYTES=260000 bash scripts/size-check.sh   # try another budget
#
# The target (issue 7) is 250 KB gzip, read strictly as 250,000 bytes; the budget below is that
# target. The Worker measures 238,879 bytes (233.3 KiB) since the handler stopped going through
# worker's Request/Response and the url crate (docs/performance.md, "Size").
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

# Raised from 250,000 to 370,000 bytes when issues 14-18 landed together (363,237 bytes with the
# default policies), with the cold-start figures before and after in docs/performance.md ("The
# size gate, raised for issues 14-18"). Lowered to 300,000 when the Worker stopped carrying the
# policy compiler (issue 19 item 4: 366,160 -> 294,661 bytes; docs/performance.md, "Cold start:
# the compiled policy embedded"), so that the gain is kept. Lower it again as the Worker sheds
# code; never drop it.
BUDGET_GZIP_BYTES="${SIZE_BUDGET_GZIP_BYTES:-300000}"

if [ -z "${SIZE_CHECK_NO_BUILD:-}" ]; then
  echo "size-check: building with the default policies (scripts/build.sh)"
  # An unset ATTESTGATE_POLICY_DIR means policies/, the deployable default.
  (unset ATTESTGATE_POLICY_DIR; bash scripts/build.sh >/dev/null 2>&1) || {
    echo "size-check: build failed; run scripts/build.sh to see why" >&2
    exit 1
  }
fi
[ -f build/index.js ] && [ -f build/index_bg.wasm ] || {
  echo "size-check: no build/index.js + build/index_bg.wasm" >&2
  exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# wrangler runs the [build] command before bundling: SKIP_WORKER_BUILD keeps the build above.
SKIP_WORKER_BUILD=1 WRANGLER_OUTPUT_FILE_PATH="$tmp/output.json" \
  wrangler deploy --dry-run --outdir "$tmp/dist" >"$tmp/wrangler.log" 2>&1 || {
  cat "$tmp/wrangler.log" >&2
  echo "size-check: wrangler deploy --dry-run failed" >&2
  exit 1
}

read -r raw gzip < <(node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
  const d = lines.map(JSON.parse).reverse().find((e) => e.type === "deploy" && e.bundle_size);
  if (!d) process.exit(1);
  console.log(d.bundle_size.raw_bytes, d.bundle_size.gzip_bytes);
' "$tmp/output.json") || {
  echo "size-check: no bundle_size in wrangler's output file" >&2
  exit 1
}

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
echo "size-check: bundle $(kib "$raw") raw, $(kib "$gzip") gzip ($gzip bytes); budget $(kib "$BUDGET_GZIP_BYTES") gzip"
if [ "$gzip" -gt "$BUDGET_GZIP_BYTES" ]; then
  echo "size-check: FAIL: gzip bundle is $gzip bytes, over the budget of $BUDGET_GZIP_BYTES bytes" >&2
  exit 1
fi
echo "size-check: ok ($(( (BUDGET_GZIP_BYTES - gzip) * 100 / BUDGET_GZIP_BYTES ))% under budget)"
