# Sourced by the other scripts: one place for the paths and flags the build and tests need.
# Everything comes from the package registries (crates.io, npm, PyPI); nothing is downloaded
# from anywhere else (worker-build's own downloads are replaced by the tools below).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
# Keep wrangler and miniflare off the network and their logs inside the project.
export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="$ROOT/.wrangler/logs"
export PYTHON="$ROOT/.venv/bin/python"
