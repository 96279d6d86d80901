#!/usr/bin/env bash
# Builds the Worker (build/index.js + build/index_bg.wasm) with worker-build, using only local
# tools. ATTESTGATE_POLICY_DIR selects the policy folder compiled in (default: policies/).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec worker-build --release "$@"
