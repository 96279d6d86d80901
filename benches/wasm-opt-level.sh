#!/usr/bin/env bash
# wasm-opt with another optimisation level, for benches/build_matrix.py only.
# worker-build runs `$WASM_OPT_BIN <in.wasm> -o <out.wasm> <args from Cargo.toml or -O>
# --enable-... --debuginfo`; this wrapper replaces the -O/-Os/-Oz/-O3... argument with
# $BENCH_WASM_OPT_LEVEL (e.g. -Oz), or copies the module unchanged when it is "off".
set -euo pipefail
real="$(cd "$(dirname "$0")/.." && pwd)/node_modules/.bin/wasm-opt"
level="${BENCH_WASM_OPT_LEVEL:-}"
if [ "$level" = "off" ]; then
  cp "$1" "$3"
  exit 0
fi
args=()
for a in "$@"; do
  if [ -n "$level" ] && [[ "$a" =~ ^-O[0-9sz]?$ ]]; then
    args+=("$level")
  else
    args+=("$a")
  fi
done
exec "$real" "${args[@]}"
