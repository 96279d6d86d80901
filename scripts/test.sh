#!/usr/bin/env bash
# The whole test suite: native unit and integration tests (the pure core, the policy compiler,
# Wycheproof/RFC vectors, the attack catalogue), wasm tests of the core in the Worker's target,
# then the end-to-end tests against the real
# Worker in `wrangler dev` with tokens minted by joserfc.
# Needs ../shared/vectors next to the checkout (the tests fail loudly without it).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh

echo "== native tests (cargo test --workspace)"
cargo test --workspace

echo "== wasm tests (the core compiled for the Worker's target, wasm-bindgen-test-runner)"
cargo test --target wasm32-unknown-unknown --test wasm

echo "== end-to-end tests (wrangler dev + joserfc)"
"$PYTHON" -m pytest tests/e2e -p no:cacheprovider -rA --tb=short "$@"
