#!/usr/bin/env bash
# Builds the Worker (build/index.js + build/index_bg.wasm) with worker-build, using only local
# tools. ATTESTGATE_POLICY_DIR selects the policy folder compiled in (default: policies/).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
worker-build --release "$@"
# The default export as a plain object instead of worker-build's per-request class + Proxy
# chain (same re-initialisation after a trap); see the script's docstring.
out_dir=build
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir|-d) out_dir="$2"; shift ;;
    --out-dir=*) out_dir="${1#--out-dir=}" ;;
  esac
  shift
done
python3 scripts/plain_entry.py "$out_dir/index.js"
