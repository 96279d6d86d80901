#!/usr/bin/env bash
# Installs everything the build and the tests need, on a fresh machine, from the package
# registries only. Idempotent: each step is skipped when its tool is already at the right version.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

WORKER_BUILD_VERSION=0.8.7
# wasm-bindgen-cli must equal the wasm-bindgen library version in Cargo.lock.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)

step() { printf '\n== %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(worker-build --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  step "cargo install worker-build $WORKER_BUILD_VERSION"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  step "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lock pins a crate version this registry does not serve.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# Fuzzing (scripts/fuzz.sh): a nightly toolchain for cargo-fuzz's build flags, and cargo-fuzz.
CARGO_FUZZ_VERSION=0.13.2
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  step "rustup toolchain install nightly --profile minimal"
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  step "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The CPU regression gate (scripts/insn-gate.sh) counts instructions with valgrind.
if ! command -v valgrind >/dev/null 2>&1; then
  step "apt-get install valgrind"
  apt-get update
  apt-get install -y --no-install-recommends valgrind
fi

# npm ci rejects the lock here (it omits platform packages the registry does not serve);
# npm install with the committed lock gives the same tree and leaves the lock unchanged.
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm install (wrangler, Node 22, binaryen, jose)"
  npm install --no-audit --no-fund
fi

if [ ! -x .venv/bin/python ] || [ tests/e2e/requirements.txt -nt .venv/.installed ]; then
  step "python venv for the end-to-end tests (joserfc, pytest)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
  touch .venv/.installed
fi

for tool in "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN" "$ROOT/node_modules/.bin/wrangler"; do
  [ -x "$tool" ] || { echo "setup: missing $tool" >&2; exit 1; }
done
echo "setup: ok"
