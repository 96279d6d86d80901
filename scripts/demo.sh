#!/usr/bin/env bash
# Runs the gateway locally on the example policies (policies/): a demo origin + token issuer on
# 127.0.0.1:8788 and the Worker in `wrangler dev` (real workerd, local Durable Objects) on
# 127.0.0.1:8787. No Cloudflare account and no network beyond loopback. Ctrl-C stops both.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh

# Local secrets (never committed): generated once.
if [ ! -f .dev.vars ]; then
  {
    echo "ATTESTGATE_NONCE_KEY=\"$(head -c 32 /dev/urandom | base64)\""
    echo "APPROOV_SECRET=\"$(head -c 32 /dev/urandom | base64)\""
  } > .dev.vars
  echo "demo: wrote .dev.vars with fresh local secrets"
fi

ATTESTGATE_POLICY_DIR="$ROOT/policies" bash scripts/build.sh

"$PYTHON" tests/e2e/servers.py --port 8788 &
servers=$!
trap 'kill $servers 2>/dev/null || true' EXIT

echo "demo: gateway on http://127.0.0.1:8787 (policies/), origin + issuer on http://127.0.0.1:8788"
SKIP_WORKER_BUILD=1 wrangler dev --ip 127.0.0.1 --port 8787 --persist-to .wrangler/state \
  --show-interactive-dev-session=false
