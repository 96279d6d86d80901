#!/usr/bin/env python3
"""Issue 19 item 4: a fresh isolate's first request in parts, build against build.

    source scripts/env.sh
    .venv/bin/python benches/cold_split.py build NAME        # the working tree, with the probes
    .venv/bin/python benches/cold_split.py run NAME... [--runs N]

`build` makes a measuring build, never a gateway (the source is edited for the build and put
back after it): the Worker of the working tree with benches/policies, plus two probe paths
answered before anything else — `/__cold/none` answers at once (the module instantiated, the
wasm entered, nothing of the gateway run) and `/__cold/isolate` runs only `isolate()` (the
embedded policy read into a `Gate`, the per-isolate state) and answers.

`run` starts a fresh workerd process (benches/workerd.py's DirectWorker, TCP readiness probe:
nothing has reached the Worker) for every scenario and build, builds interleaved run by run,
and times its first request(s) from outside: wall time and the CPU of the whole process (V8's
compiler threads included). Scenarios: `none`; `isolate` then `GET /healthz` (the public
route's first use after the policy step); `verified` (`GET /v1/orders/42` with an ES256 token
minted by joserfc: the target's figure, JWKS fetch and key import included). The policy step of
a cold isolate is `isolate` − `none`. Prints median (min–max) over the runs (default 7).
Environment: AB_PORT (47123: the origin/issuer port, compiled into the builds' policies).
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workerd as B  # noqa: E402

AB = HERE / ".ab"
PORT = int(os.environ.get("AB_PORT", "47123"))
ANCHOR = "    let id = request_id();\n    // The method exactly as received"
PROBES = '''    if url.path == "/__cold/none" {
        return Ok(respond(&Answer::json(200, String::from("{}")))?.into());
    }
    if url.path == "/__cold/isolate" {
        let status = if isolate().is_ok() { 200 } else { 500 };
        return Ok(respond(&Answer::json(status, String::from("{}")))?.into());
    }
'''
SCENARIOS = {
    "none": ["/__cold/none"],
    "isolate": ["/__cold/isolate", "/healthz"],
    "verified": ["verified"],
}


def build(name: str) -> None:
    src = B.ROOT / "src" / "edge" / "mod.rs"
    text = src.read_text()
    if text.count(ANCHOR) != 1:
        sys.exit(f"{src}: the probes' anchor is gone; update benches/cold_split.py")
    servers = B.LocalServers(port=PORT)
    servers.start()
    try:
        src.write_text(text.replace(ANCHOR, PROBES + ANCHOR))
        dest = AB / "builds" / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        secs = B.build_attestgate(B.fill_policies(servers, AB / "policies-cold"), dest)
        (dest / "COLD_PROBES").write_text("the /__cold/ probes: a measuring build\n")
        print(f"built {name} in {secs:.0f} s")
    finally:
        src.write_text(text)
        servers.stop()


def run(names: list[str], runs: int) -> None:
    builds = [AB / "builds" / n for n in names]
    for b in builds:
        if not (b / "COLD_PROBES").exists():
            sys.exit(f"{b}: not a cold_split build (benches/cold_split.py build NAME)")
    servers = B.LocalServers(port=PORT)
    servers.start()
    work = AB / "cold-split"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res: dict[tuple[int, str], list[list[tuple[float, float, int]]]] = {}
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        env = {"ATTESTGATE_LOG": "decisions", "ATTESTGATE_SIGNING_KEY": B.signing_key_json(),
               "BENCH_INJECT_KEY": B.INJECT_KEY,
               "ATTESTGATE_NONCE_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
        now = int(time.time())
        for _ in range(runs):
            for i, build_dir in enumerate(builds):
                d = work / f"b{i}"
                d.mkdir(exist_ok=True)
                config = B.attestgate_config(d, build_dir, False)
                for scenario, steps in SCENARIOS.items():
                    w = B.DirectWorker(f"cold-{scenario}", config, d, env, bundle_of="cold")
                    w.start(probe="tcp")
                    row = []
                    try:
                        for step in steps:
                            path, headers = step, {}
                            if step == "verified":
                                path = B.ORDER_PATH
                                headers = B.bearer(servers.issuer.mint(
                                    B.KIDS["ES256"], **B.good_claims(now)))
                            before = B.proc_cpu(w.user_pid)
                            t = time.perf_counter()
                            status, _ = w.get(path, headers)
                            wall = (time.perf_counter() - t) * 1000
                            cpu = B.cpu_delta_ns(before, B.proc_cpu(w.user_pid))[0] / 1e6
                            if status != 200:
                                sys.exit(f"{names[i]} {scenario} {path}: {status}")
                            row.append((wall, cpu, status))
                    finally:
                        w.stop()
                    res.setdefault((i, scenario), []).append(row)
    finally:
        servers.stop()

    def med(v: list[float]) -> str:
        return f"{statistics.median(v):6.1f} ({min(v):.1f}–{max(v):.1f})"

    print(f"first requests of a fresh workerd process, {runs} runs per build and scenario, "
          f"median (min–max); load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| build | scenario | request | wall ms | CPU ms |\n|---|---|---|---|---|")
    for scenario, steps in SCENARIOS.items():
        for i, name in enumerate(names):
            rows = res[(i, scenario)]
            for k, step in enumerate(steps):
                print(f"| {name} | {scenario} | {step} | {med([r[k][0] for r in rows])} | "
                      f"{med([r[k][1] for r in rows])} |")
    for i, name in enumerate(names):
        step = [a[0][1] - b[0][1] for a, b in zip(res[(i, "isolate")], res[(i, "none")])]
        print(f"- {name}: the policy step (isolate − none, per run) {med(step)} ms CPU")


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "build":
        build(args[1])
    elif len(args) >= 2 and args[0] == "run":
        runs = 7
        if "--runs" in args:
            at = args.index("--runs")
            runs = int(args[at + 1])
            del args[at:at + 2]
        run(args[1:], runs)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
