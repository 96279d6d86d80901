#!/usr/bin/env bash
# The CPU regression gate (issue 19, item 6): instructions per full decision of the native core,
# counted by `valgrind --tool=callgrind` (deterministic for one binary and input, whatever else
# the machine is doing), against the baseline recorded in benches/baseline/insns.json. Fails when
# a case costs more than 5% over its baseline. docs/performance.md, "CPU regression gate".
#
#   bash scripts/insn-gate.sh                    # measure and compare
#   bash scripts/insn-gate.sh --record "why"     # measure and write the baseline (with the why)
#
# Each case (ES256, EdDSA, HS256) runs twice under callgrind, with N decisions and with none
# (both after the same set-up and one warm-up decision); (Ir(N) - Ir(0)) / N is the count per
# decision, so start-up, policy compilation and one-time initialisation are excluded.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

BASELINE=benches/baseline/insns.json
ITERATIONS=20
TOLERANCE=0.05
CASES=(ES256 EdDSA HS256)

record=""
case "${1:-}" in
  --record)
    record=${2:-}
    [ -n "$record" ] || { echo "insn-gate: --record needs a reason: --record \"why\"" >&2; exit 2; }
    ;;
  "") ;;
  *) echo "usage: scripts/insn-gate.sh [--record \"why\"]" >&2; exit 2 ;;
esac

command -v valgrind >/dev/null || { echo "insn-gate: valgrind is missing: run scripts/setup.sh" >&2; exit 1; }

echo "== insn-gate: build (cargo bench --bench insns --no-run)"
started=$(date +%s)
# The bench's executable, from cargo's own report. The first build after a source change can
# fail to link here (cargo builds the library for the bench and the CLI at once); one retry.
bench_exe() {
  { cargo bench --bench insns --no-run --message-format=json 2>/dev/null || true; } | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "insns" and msg.get("executable"):
        print(msg["executable"])
'
}
exe=""
for attempt in 1 2 3; do
  exe=$(bench_exe)
  [ -n "$exe" ] && [ -x "$exe" ] && break
  echo "insn-gate: build attempt $attempt did not give the bench; again" >&2
done
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  cargo bench --bench insns --no-run >&2 || true
  echo "insn-gate: the insns bench did not build" >&2
  exit 1
fi
echo "insn-gate: build took $(( $(date +%s) - started ))s ($exe)"

out=target/insn-gate
mkdir -p "$out"
ir() { # case iterations -> total Ir of the whole run
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$1.$2.out" "$exe" "$1" "$2" \
    >"$out/$1.$2.stdout" 2>"$out/$1.$2.valgrind.log" \
    || { cat "$out/$1.$2.stdout" "$out/$1.$2.valgrind.log" >&2; echo "insn-gate: $1 failed" >&2; exit 1; }
  sed -n 's/^summary: *//p' "$out/callgrind.$1.$2.out"
}

measured=()
for c in "${CASES[@]}"; do
  full=$(ir "$c" "$ITERATIONS")
  base=$(ir "$c" 0)
  measured+=("$c=$(( (full - base) / ITERATIONS ))")
done

RECORD="$record" MEASURED="${measured[*]}" BASELINE="$BASELINE" ITERATIONS="$ITERATIONS" \
TOLERANCE="$TOLERANCE" TOOLCHAIN="$(rustc --version)" VALGRIND="$(valgrind --version)" python3 - <<'PY'
import datetime, json, os, sys

measured = dict(item.split("=") for item in os.environ["MEASURED"].split())
measured = {case: int(n) for case, n in measured.items()}
path = os.environ["BASELINE"]
tolerance = float(os.environ["TOLERANCE"])

if os.environ["RECORD"]:
    doc = {
        "what": "instructions (callgrind Ir) per full decision of the native core, benches/insns.rs",
        "why": os.environ["RECORD"],
        "recorded": datetime.date.today().isoformat(),
        "toolchain": os.environ["TOOLCHAIN"],
        "valgrind": os.environ["VALGRIND"],
        "iterations": int(os.environ["ITERATIONS"]),
        "tolerance": tolerance,
        "per_decision_ir": measured,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    for case, n in measured.items():
        print(f"insn-gate: {case}: {n} Ir per decision (recorded)")
    print(f"insn-gate: baseline written to {path}")
    sys.exit(0)

try:
    with open(path) as f:
        doc = json.load(f)
except FileNotFoundError:
    sys.exit(f'insn-gate: no baseline at {path}: record one with --record "why"')
baseline = doc["per_decision_ir"]
if doc.get("toolchain") != os.environ["TOOLCHAIN"]:
    print(f"insn-gate: note: baseline recorded with {doc.get('toolchain')}, now {os.environ['TOOLCHAIN']}"
          " (a compiler change moves counts; re-record with its why if that is the cause)")
print(f"insn-gate: baseline {doc.get('recorded')}: {doc.get('why')}")
print(f"{'case':<8}{'baseline Ir':>14}{'now Ir':>14}{'ratio':>9}")
failed = []
for case, now in measured.items():
    base = baseline.get(case)
    if not base:
        failed.append(f"{case}: no baseline")
        print(f"{case:<8}{'-':>14}{now:>14}{'-':>9}")
        continue
    ratio = now / base
    flag = ""
    if ratio > 1 + tolerance:
        flag = f"  > {1 + tolerance:.2f}: REGRESSION"
        failed.append(f"{case}: {ratio:.3f}x")
    elif ratio < 1 - tolerance:
        flag = "  faster: record a new baseline with the why"
    print(f"{case:<8}{base:>14}{now:>14}{ratio:>8.3f}x{flag}")
if failed:
    print(f"insn-gate: FAILED ({', '.join(failed)}): more than {tolerance:.0%} over the baseline. "
          'If the cost is intended, record it: scripts/insn-gate.sh --record "why"', file=sys.stderr)
    sys.exit(1)
print("insn-gate: ok")
PY
