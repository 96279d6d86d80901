#!/usr/bin/env python3
"""The decision log's CPU per request in async mode, measured on two workerd processes of the
same build (issue 17; docs/performance.md, "Async decision log: where the time went").

    source scripts/env.sh
    AB_PORT=47411 .venv/bin/python benches/ab.py build after     # a build for that port
    AB_PORT=47411 .venv/bin/python benches/audit/swap.py after

Processes A and B each serve every other request (A, B, B, A, A, B, ...: unique ES256 tokens,
one per request), one on the bench route with `audit = "async"` (`/v1/audited/42`), the other
on the same route without it (`/v1/orders/42`); the roles swap every round, so what differs
between the two processes cancels out. After each round it waits SETTLE seconds before reading
the processes' CPU, so that the last flush of a round (up to `gate::audit::batch::MAX_WAIT`,
1 s, after its last request, plus its append) is counted in the round whose records it sends.
(`benches/workerd.py --workloads audit` runs the two routes one after the other on one process
and reads the CPU right after each 300 requests: there the last flush of the audit batch lands
in the batch without audit.)

Prints per round and the median (min–max) of: audit CPU/request, off CPU/request, their ratio
and difference; then each process's records and batches, read from its AuditLog's SQLite.
Environment: ROUNDS (16), N requests per process per round (300), WARM (300), SETTLE (1.6;
more than MAX_WAIT: 1.0 was enough for the 500 ms window before session 7),
AB_PORT (47123, as benches/ab.py), EXTRA (`NAME=value,...`: more vars for both processes).
"""
from __future__ import annotations

import base64
import glob
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))
import workerd as B  # noqa: E402

PORT = int(os.environ.get("AB_PORT", "47123"))
ROUNDS = int(os.environ.get("ROUNDS", "16"))
N = int(os.environ.get("N", "300"))
WARM = int(os.environ.get("WARM", "300"))
SETTLE = float(os.environ.get("SETTLE", "1.6"))


def log_rows(folder: Path) -> tuple[int, int | None] | None:
    """The AuditLog's size and how many batch rows hold it (None: the earlier layout, without
    batch rows), read from the SQLite of the workerd process persisted in `folder`; None without
    a log. Also used by benches/audit/window.py."""
    for f in glob.glob(str(folder / "persist-attestgate" / "**" / "*.sqlite"), recursive=True):
        con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "meta" not in tables:
                continue
            row = con.execute("SELECT v FROM meta WHERE k = 'size'").fetchone()
            size = int(row[0]) if row else 0
            if "entries" not in tables:
                return size, None
            return size, con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        except sqlite3.Error:
            continue
        finally:
            con.close()
    return None


def batches(folder: Path) -> str:
    """The log's size and how many batch rows hold it (the tile layout)."""
    rows = log_rows(folder)
    if rows is None:
        return "no log"
    size, n = rows
    if n is None:
        return f"{size} records (the earlier layout: no batch rows)"
    return f"{size} records in {n} batches ({size / max(n, 1):.1f} per batch)"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = ROOT / "benches" / ".ab" / "builds" / sys.argv[1]
    if not (build / "index.js").exists():
        sys.exit(f"no build {build} (benches/ab.py build NAME, with the same AB_PORT)")
    servers = B.LocalServers(port=PORT)
    servers.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    servers.start()
    work = ROOT / "benches" / ".ab" / "swap"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    workers: dict[str, B.DirectWorker] = {}
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        vars_ = {"ATTESTGATE_LOG": "decisions",
                 "ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                 "ATTESTGATE_SIGNING_KEY": B.signing_key_json(), "BENCH_INJECT_KEY": B.INJECT_KEY}
        for kv in filter(None, os.environ.get("EXTRA", "").split(",")):
            k, v = kv.split("=", 1)
            vars_[k] = v
        for name in ("A", "B"):
            (work / name).mkdir()
            workers[name] = B.DirectWorker(
                "attestgate", B.attestgate_config(work / name, build, False), work / name, vars_)
            workers[name].start()
        servers.recorder.add = lambda entry: None
        now = int(time.time())
        tokens = [servers.issuer.mint(B.KIDS["ES256"], **B.good_claims(now))
                  for _ in range(WARM + ROUNDS * N)]

        def run(n: int, start: int, audited: str) -> tuple[dict[str, float], float]:
            before = {k: B.proc_cpu(w.user_pid) for k, w in workers.items()}
            t = time.perf_counter()
            for i in range(n):
                for name in (("A", "B") if i % 2 == 0 else ("B", "A")):
                    path = B.AUDIT_PATH if name == audited else B.ORDER_PATH
                    status, _ = workers[name].get(path, B.bearer(tokens[start + i]))
                    if status != 200:
                        raise SystemExit(f"{name} {path}: {status}")
            wall = time.perf_counter() - t
            time.sleep(SETTLE)
            after = {k: B.proc_cpu(w.user_pid) for k, w in workers.items()}
            return ({k: B.cpu_delta_ns(before[k], after[k])[0] / n / 1000 for k in workers},
                    wall / n / 2)

        run(WARM // 2, 0, "A")
        run(WARM - WARM // 2, WARM // 2, "B")
        audit, off, ratio, delta = [], [], [], []
        for r in range(ROUNDS):
            on, other = ("A", "B") if r % 2 == 0 else ("B", "A")
            us, per = run(N, WARM + r * N, on)
            audit.append(us[on])
            off.append(us[other])
            ratio.append(us[on] / us[other])
            delta.append(us[on] - us[other])
            print(f"round {r + 1}/{ROUNDS}: audit ({on}) {us[on]:.0f}  off ({other}) "
                  f"{us[other]:.0f} us CPU/request, ratio {ratio[-1]:.3f} "
                  f"({per * 1000:.2f} ms/request wall)", flush=True)
        med = statistics.median
        print(f"== {sys.argv[1]}: audit {med(audit):.0f} ({min(audit):.0f}-{max(audit):.0f}), "
              f"off {med(off):.0f} ({min(off):.0f}-{max(off):.0f}) us CPU/request; ratio "
              f"{med(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f}); difference "
              f"{med(delta):+.0f} ({min(delta):+.0f}..{max(delta):+.0f}) us; {ROUNDS} rounds x "
              f"{N}, settle {SETTLE} s; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        pairs = [(delta[i] + delta[i + 1]) / 2 for i in range(0, len(delta) - 1, 2)]
        ci = B.mean_ci(pairs)
        if ci:  # each pair of rounds has each process once with and once without the log
            print(f"  difference, mean of the pairs of rounds: {ci['mean']:+.1f} ± "
                  f"{ci['ci95']:.1f} us (95%), {1 + ci['mean'] / med(off):.3f} of off")
        for name in workers:
            print(f"  {name}: {batches(work / name)}")
    finally:
        for w in workers.values():
            try:
                w.stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        servers.stop()


if __name__ == "__main__":
    main()
