#!/usr/bin/env python3
"""Build settings chosen by measurement: builds attestgate with several release settings and
measures, for each, the bundle size (raw and gzip, as `wrangler deploy --dry-run` reports it),
the CPU per verified request in workerd and the cold start (benches/workerd.py, shortened).

    .venv/bin/python benches/build_matrix.py                  # all variants
    .venv/bin/python benches/build_matrix.py --only s-fat-1-O,z-fat-1-Oz --rounds 5

Settings are varied without editing Cargo.toml: cargo reads CARGO_PROFILE_RELEASE_OPT_LEVEL,
_LTO, _CODEGEN_UNITS and _STRIP from the environment, and worker-build runs wasm-opt through
$WASM_OPT_BIN, here benches/wasm-opt-level.sh, which swaps worker-build's -O level for
$BENCH_WASM_OPT_LEVEL. Builds go to target/build-matrix and a temp folder, never to build/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benches" / "workerd.py"
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from procs import free_port  # noqa: E402

# name: (opt-level, lto, codegen-units, strip, wasm-opt level)
VARIANTS = {
    "s-fat-1-O": ("s", "fat", "1", "debuginfo", "-O"),  # the settings before issue 7
    "s-fat-1-Os": ("s", "fat", "1", "debuginfo", "-Os"),
    "s-fat-1-Oz": ("s", "fat", "1", "debuginfo", "-Oz"),
    "z-fat-1-Oz": ("z", "fat", "1", "debuginfo", "-Oz"),
    "z-fat-1-O": ("z", "fat", "1", "debuginfo", "-O"),
    "3-fat-1-O3": ("3", "fat", "1", "debuginfo", "-O3"),
    "s-thin-16-O": ("s", "thin", "16", "debuginfo", "-O"),
    "s-fat-1-off": ("s", "fat", "1", "debuginfo", "off"),
    "s-fat-1-Oz-strip": ("s", "fat", "1", "symbols", "-Oz"),
}


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def fill_policies(port: int, dest: Path):
    base = f"http://127.0.0.1:{port}"
    dest.mkdir(parents=True, exist_ok=True)
    for template in sorted((ROOT / "benches" / "policies").glob("*.toml")):
        text = template.read_text()
        text = text.replace("{{ORIGIN}}", base)
        text = text.replace("{{ISSUER}}", f"{base}/demo-issuer")
        text = text.replace("{{JWKS_URI}}", f"{base}/demo-issuer/jwks.json")
        (dest / template.name).write_text(text)


def tool_env() -> dict:
    """The environment of scripts/env.sh, read from a shell that sources it."""
    out = subprocess.run(
        ["bash", "-c", f"source {ROOT / 'scripts' / 'env.sh'} && env -0"],
        capture_output=True, check=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def build(variant: tuple, policy_dir: Path, dest: Path, base_env: dict) -> float:
    opt, lto, cgu, strip, wasm_opt = variant
    env = dict(base_env)
    env.update(
        ATTESTGATE_POLICY_DIR=str(policy_dir),
        CARGO_PROFILE_RELEASE_OPT_LEVEL=opt,
        CARGO_PROFILE_RELEASE_LTO=lto,
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=cgu,
        CARGO_PROFILE_RELEASE_STRIP=strip,
        WASM_OPT_BIN=str(ROOT / "benches" / "wasm-opt-level.sh"),
        BENCH_WASM_OPT_LEVEL=wasm_opt,
        # Its own target folder and output folder: never in the way of scripts/build.sh.
        CARGO_TARGET_DIR=str(ROOT / "target" / "build-matrix"),
    )
    started = time.perf_counter()
    r = subprocess.run(["worker-build", "--release", "--out-dir", str(dest)], cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(r.stdout.decode(errors="replace")[-4000:])
    return time.perf_counter() - started


def bundle_size(build_dir: Path, work: Path, base_env: dict) -> tuple[int, int]:
    """raw and gzip bytes of the bundle `wrangler deploy` would upload (offline dry run)."""
    d = work / "size"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    config = (ROOT / "wrangler.toml").read_text()
    config = config.replace('main = "build/index.js"', f'main = "{build_dir}/index.js"')
    (d / "wrangler.toml").write_text(config)
    env = dict(base_env, SKIP_WORKER_BUILD="1", WRANGLER_OUTPUT_FILE_PATH=str(d / "out.json"))
    subprocess.run(["wrangler", "deploy", "--dry-run", "--outdir", str(d / "dist")], cwd=d,
                   env=env, check=True, capture_output=True)
    for line in reversed((d / "out.json").read_text().splitlines()):
        entry = json.loads(line)
        if entry.get("type") == "deploy" and entry.get("bundle_size"):
            return entry["bundle_size"]["raw_bytes"], entry["bundle_size"]["gzip_bytes"]
    raise RuntimeError("no bundle_size in wrangler output")


def wasm_compile_ms(wasm: Path, base_env: dict) -> float:
    """Median time for V8 (Node 22) to compile the module synchronously (new WebAssembly.Module),
    a proxy for the compile share of a cold start."""
    js = (
        "const b=require('fs').readFileSync(process.argv[1]);const t=[];"
        "for(let i=0;i<15;i++){const s=process.hrtime.bigint();new WebAssembly.Module(b);"
        "t.push(Number(process.hrtime.bigint()-s)/1e6)}t.sort((a,b)=>a-b);console.log(t[7])"
    )
    out = subprocess.run(["node", "-e", js, str(wasm)], env=base_env, capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--cold", type=int, default=3)
    ap.add_argument("--no-bench", action="store_true", help="sizes only")
    ap.add_argument("--json", type=Path, default=ROOT / "benches" / "results" / "build-matrix.json")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="attestgate-matrix-"))
    base_env = tool_env()
    policy_dir = work / "policies"
    fill_policies(port, policy_dir)
    results = {}
    try:
        for name in names:
            variant = VARIANTS[name]
            log(f"== {name}: opt-level={variant[0]} lto={variant[1]} codegen-units={variant[2]} "
                f"strip={variant[3]} wasm-opt={variant[4]}")
            build_dir = work / name / "build"
            secs = build(variant, policy_dir, build_dir, base_env)
            raw, gz = bundle_size(build_dir, work / name, base_env)
            wasm = (build_dir / "index_bg.wasm").stat().st_size
            compile_ms = wasm_compile_ms(build_dir / "index_bg.wasm", base_env)
            row = {"settings": variant, "build_s": secs, "wasm_bytes": wasm,
                   "bundle_raw": raw, "bundle_gzip": gz, "v8_compile_ms": compile_ms}
            log(f"   built in {secs:.0f} s; wasm {wasm} B; bundle {raw} B raw, {gz} B gzip; "
                f"V8 compile {compile_ms:.1f} ms")
            if not args.no_bench:
                out = work / name / "bench.json"
                r = subprocess.run(
                    [sys.executable, str(BENCH), "--build-dir", str(build_dir), "--port", str(port),
                     "--rounds", str(args.rounds), "--requests", str(args.requests),
                     "--warmup", "200", "--load-duration", "0", "--cold", str(args.cold),
                     "--workloads", "unique,public", "--json", str(out)],
                    env=base_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    timeout=1800,
                )
                if r.returncode != 0:
                    log(r.stdout[-3000:])
                    raise RuntimeError(f"bench failed for {name}")
                bench = json.loads(out.read_text())
                s = bench["cpu"]["summary"]
                algs = ("ES256", "EdDSA")
                row["cpu_us"] = {g: s[f"unique {g}"]["attestgate"]["median"] for g in algs}
                row["net_us"] = {g: s[f"unique {g}"]["net_attestgate"]["median"] for g in algs}
                row["ratio_net"] = {g: s[f"unique {g}"]["ratio_net"]["median"] for g in algs}
                row["public_us"] = s["public"]["attestgate"]["median"]
                # Since issue 19: a fresh isolate that has served nothing (the first verified
                # request includes instantiation and the policy compile); before, the first
                # verified request came after a readiness probe the Worker had answered.
                cold = bench["cold"]["summary"]["scenarios"]["attestgate | verified first"]
                row["cold_listen_s"] = cold["listen_ms"]["median"] / 1000
                row["cold_first_ms"] = cold["steps"][0]["ms"]["median"]
                log(f"   CPU us/request ES256 {row['cpu_us']['ES256']:.0f} EdDSA "
                    f"{row['cpu_us']['EdDSA']:.0f} (net {row['net_us']['ES256']:.0f} / "
                    f"{row['net_us']['EdDSA']:.0f}); public {row['public_us']:.0f}; cold: "
                    f"listening {row['cold_listen_s']:.2f} s, first verified request "
                    f"{row['cold_first_ms']:.1f} ms")
            results[name] = row
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"machine_load": open("/proc/loadavg").read().split()[:3],
                                             "variants": results}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| variant | opt | lto | cgu | strip | wasm-opt | wasm B | gzip B | V8 compile ms "
          "| ES256 us | EdDSA us | public us | listening s | first verified ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        o, l, c, st, w = r["settings"]
        cpu = r.get("cpu_us", {})
        print(f"| {name} | {o} | {l} | {c} | {st} | {w} | {r['wasm_bytes']} | {r['bundle_gzip']} "
              f"| {r['v8_compile_ms']:.1f} | {cpu.get('ES256', float('nan')):.0f} "
              f"| {cpu.get('EdDSA', float('nan')):.0f} | {r.get('public_us', float('nan')):.0f} "
              f"| {r.get('cold_listen_s', r.get('cold_ready_s', float('nan'))):.2f} "
              f"| {r.get('cold_first_ms', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
