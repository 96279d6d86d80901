#!/usr/bin/env python3
"""Nonce-store load benchmark: challenge issue and nonce consume, on workerd directly.

One command (from the repository root):

    source scripts/env.sh && .venv/bin/python benches/nonce_load.py
    .venv/bin/python benches/nonce_load.py --quick        # a smoke run (300 requests per phase)
    .venv/bin/python benches/nonce_load.py --runtime wrangler   # the runs before issue 19

For each shard count (default 1, 4, 16) it builds the Worker with the policy in
benches/nonce_load/policy (`nonce_shards` filled in, via ATTESTGATE_POLICY_DIR), serves it and
drives three phases with a bounded number of requests, a bounded time and a fixed number of
concurrent keep-alive connections:

- issue:    POST {challenge_path}, one client address per request (the endpoint is
            rate-limited per address)   (whatever issuing costs in this build: a Durable Object
            write per challenge, or none since issue 12's stateless nonces, which only
            consumption records; the "store files" and "rows added" columns show which)
- consume:  GET /bench/consume, HS256 token whose `nonce` claim is one of the issued nonces
            (verify + one Durable Object consume + forward to a local origin)
- baseline: GET /bench/baseline, the same HS256 token kind without a nonce
            (verify + forward; no store call) - what consume costs beyond the store, and the
            ceiling of this client and origin on this machine

Runtimes: `--runtime workerd` (default) bundles the build with `wrangler deploy --dry-run` and
serves it with the workerd binary from a generated config (benches/workerd.py, DirectWorker):
the NonceStore Durable Object on local SQLite, no dev proxy in front. `--runtime wrangler` runs
it in `wrangler dev` as before (its dev server capped this benchmark at about 190 requests per
second). The origin runs in its own Python process (tests/e2e/servers.py), so it does not share
the client's interpreter lock. The Durable Objects' SQLite files live on tmpfs by default
(`--store disk` for the scratch folder): local workerd runs SQLite on its event loop, so on a
disk every commit's fsync stalls the whole process and the figures follow the disk's latency
under whatever else the machine does (measured here: ~220 instead of ~1000 issues/s).

Reported per shard count and phase: requests answered as expected, failures, median and p99
latency (ms), throughput (requests/s), CPU of the workerd process per request (workerd runtime;
the Durable Objects run in that process locally), how many files of the Durable Objects'
storage the phase changed (0: it wrote nothing) and how many rows it added to their tables
(read through SQLite, read-only, between the phases). Any answer other than the expected one
stops the run (`--tolerate-failures` counts them instead). JSON goes to
benches/results/nonce_load-workerd.json (nonce_load.json for --runtime wrangler, the figures of
the earlier runs; --out elsewhere) with a note of the machine. Tokens are minted here with the
standard library's HMAC; nothing of the gateway's own code signs anything.

Bounded by design: loopback only, --requests per phase (default 2000), --max-seconds per phase
(default 60), --concurrency connections (default 16).

Caveat, measured not assumed: local workerd runs every Durable Object of the namespace in one
process, on however many cores the machine has (2 here), and this client competes with it for
them. Shard scaling seen here is therefore bounded; on Cloudflare each shard is its own object,
placed and run independently.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "benches" / "nonce_load" / "policy"
# Where the results go by runtime: the wrangler dev figures of the runs before issue 19 stay as
# they were recorded (docs/nonces.md cites them).
RESULTS = {"workerd": ROOT / "benches" / "results" / "nonce_load-workerd.json",
           "wrangler": ROOT / "benches" / "results" / "nonce_load.json"}
CHALLENGE_PATH = "/.well-known/attestgate/challenge"

# Reuse the e2e harness and the CPU benchmark's runner: `Gateway` runs wrangler dev exactly as
# the tests do; `DirectWorker` serves a bundle with workerd itself. Importing conftest does not
# run pytest.
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "benches"))
from conftest import APPROOV_SECRET, Gateway  # noqa: E402
from procs import free_port, stop_group  # noqa: E402
from workerd import DirectWorker, attestgate_config, cpu_delta_ns, proc_cpu  # noqa: E402


class Failed(Exception):
    pass


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HS256_HEADER = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def hs256(claims: dict) -> str:
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{HS256_HEADER}.{payload}".encode()
    sig = hmac.new(APPROOV_SECRET, signing_input, hashlib.sha256).digest()
    return f"{HS256_HEADER}.{payload}.{b64url(sig)}"


# ---- build and run ------------------------------------------------------------------------------

def build(shards: int, origin: str, workdir: Path, build_root: Path | None) -> Path:
    """The Worker for `shards` shards and this origin; kept in `build_root` (--build-dir) and
    reused from there when it was built for the same origin."""
    out = (build_root or workdir) / f"build-{shards}"
    stamp = out / ".bench-origin"
    if build_root and stamp.exists() and stamp.read_text() == origin:
        print(f"  reusing {out}", file=sys.stderr)
        return out
    policy_dir = workdir / f"policy-{shards}"
    policy_dir.mkdir()
    for template in sorted(POLICY.glob("*.toml")):
        text = template.read_text().replace("{{ORIGIN}}", origin).replace("{{SHARDS}}", str(shards))
        (policy_dir / template.name).write_text(text)
    started = time.time()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build.sh")],
        cwd=ROOT,
        env=dict(os.environ, ATTESTGATE_POLICY_DIR=str(policy_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        sys.exit("worker build failed:\n" + result.stdout.decode(errors="replace")[-4000:])
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ROOT / "build", out)
    stamp.write_text(origin)
    print(f"  built for {shards} shard(s) in {time.time() - started:.0f}s", file=sys.stderr)
    return out


# The origin: tests/e2e/servers.py's LocalServers, with TCP_NODELAY (http.server writes the head
# and the body in two sends: without it, Nagle and the client's delayed ACK add 40 ms to every
# response on a kept-alive connection), recording nothing.
ORIGIN_PY = """\
import sys
sys.path.insert(0, sys.argv[1])
from servers import LocalServers
s = LocalServers(port=int(sys.argv[2]))
s.httpd.RequestHandlerClass.disable_nagle_algorithm = True
s.recorder.add = lambda entry: None
s.httpd.serve_forever()
"""


class Origin:
    """The loopback origin in its own process (not sharing the client's interpreter lock)."""

    def __init__(self, port: int):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ORIGIN_PY, str(ROOT / "tests" / "e2e"), str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ready")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the origin did not start")

    def stop(self):
        stop_group(self.proc)


class Served:
    """The Worker under load: `port`, the workerd process id for CPU accounting (0 when
    unknown) and the Durable Object storage folder."""

    def __init__(self, runtime: str, shards: int, build_dir: Path, workdir: Path):
        """`workdir` holds the Durable Objects' storage (tmpfs or disk, --store)."""
        self.persist = workdir / f"persist-{shards}"
        self.persist.mkdir()
        self.worker = self.gateway = None
        if runtime == "workerd":
            d = workdir / f"workerd-{shards}"
            d.mkdir()
            vars_ = {
                "ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "APPROOV_SECRET": base64.b64encode(APPROOV_SECRET).decode(),
            }
            self.worker = DirectWorker(f"nonce-{shards}", attestgate_config(d, build_dir, False),
                                       d, vars_)
            self.worker.start()
            self.port, self.pid = self.worker.port, self.worker.user_pid
            self.persist = d / f"persist-{self.worker.name}"
        else:
            self.gateway = Gateway(workdir, self.persist, build_dir).start()
            self.port, self.pid = self.gateway.port, 0

    def cpu(self):
        return proc_cpu(self.pid) if self.pid else None

    def store_state(self) -> tuple[int | None, dict]:
        """(rows in the Durable Objects' own tables, read through SQLite read-only, or None if
        they cannot be read; {file: (size, mtime)} of the storage folder). Not under `wrangler
        dev`, whose storage folder holds miniflare's own files too: (None, {})."""
        if self.gateway:
            return None, {}
        files, rows = {}, 0
        for p in self.persist.rglob("*"):
            if p.is_file():
                st = p.stat()
                files[str(p)] = (st.st_size, st.st_mtime_ns)
        for p in self.persist.rglob("*.sqlite"):
            if p.name == "metadata.sqlite":
                continue
            try:
                conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5)
                try:
                    tables = [n for (n,) in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'")
                        if not n.startswith("_cf_")]
                    rows += sum(conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]
                                for n in tables)
                finally:
                    conn.close()
            except sqlite3.Error:
                rows = None
                break
        return rows, files

    def stop(self):
        if self.worker:
            self.worker.stop()
        if self.gateway:
            self.gateway.stop()


# ---- load ---------------------------------------------------------------------------------------

class Phase:
    """Run `make_request(i)` for i in range(n) over `concurrency` keep-alive connections."""

    def __init__(self, served: Served, concurrency: int, max_seconds: float, strict: bool):
        self.served = served
        self.concurrency = concurrency
        self.max_seconds = max_seconds
        self.strict = strict

    def run(self, n: int, make_request, check):
        next_index = iter(range(n))
        lock = threading.Lock()
        latencies: list[float] = []
        failures: list[str] = []
        results: list = [None] * n
        deadline = time.perf_counter() + self.max_seconds
        stop = threading.Event()

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", self.served.port, timeout=30)
            while time.perf_counter() < deadline and not stop.is_set():
                with lock:
                    i = next(next_index, None)
                if i is None:
                    break
                method, path, headers = make_request(i)
                t0 = time.perf_counter()
                try:
                    conn.request(method, path, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.served.port, timeout=30)
                    with lock:
                        failures.append(type(e).__name__)
                    if self.strict:
                        stop.set()
                    continue
                elapsed = (time.perf_counter() - t0) * 1000
                ok, value = check(resp, body)
                with lock:
                    if ok:
                        latencies.append(elapsed)
                        results[i] = value
                    else:
                        failures.append(f"{method} {path}: {resp.status} {body[:120]!r}")
                        if self.strict:
                            stop.set()
            conn.close()

        cpu_before = self.served.cpu()
        rows_before, files_before = self.served.store_state()
        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        cpu_after = self.served.cpu()
        stats = summarise(latencies, failures, wall)
        if cpu_before is not None and latencies:
            ns, how = cpu_delta_ns(cpu_before, cpu_after)
            stats["cpu_us_per_request"] = round(ns / 1000 / (len(latencies) + len(failures)), 1)
            stats["cpu_accounting"] = how
        rows_after, files_after = self.served.store_state()
        # Did the phase write to the Durable Objects' storage, and how many rows did it add?
        stats["store_files_written"] = sum(
            1 for f, st in files_after.items() if files_before.get(f) != st
        ) if files_after else None
        stats["store_rows_added"] = (rows_after - rows_before
                                     if rows_before is not None and rows_after is not None
                                     else None)
        if failures and self.strict:
            raise Failed(f"{len(failures)} unexpected answers, e.g. {failures[:3]} "
                         "(--tolerate-failures counts them instead)")
        return stats, [r for r in results if r is not None]


def summarise(latencies, failures, wall):
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
    return {
        "ok": len(ordered),
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "median_ms": round(statistics.median(ordered), 2) if ordered else None,
        "p99_ms": round(p99, 2) if p99 is not None else None,
        "throughput_rps": round(len(ordered) / wall, 1) if wall > 0 else None,
        "wall_s": round(wall, 2),
    }


def get(port: int, method: str, path: str, headers: dict) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def bench_one(shards, build_dir, store_dir, args):
    served = Served(args.runtime, shards, build_dir, store_dir)
    try:
        phase = Phase(served, args.concurrency, args.max_seconds, not args.tolerate_failures)
        exp = int(time.time()) + 3000

        def issue(i):
            # One client address per request: the challenge endpoint is rate-limited per
            # address (docs/nonces.md); workerd, like `wrangler dev`, keeps a CF-Connecting-IP
            # the client sent.
            address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            return "POST", CHALLENGE_PATH, {"cf-connecting-ip": address}

        def got_nonce(resp, body):
            if resp.status != 200:
                return False, None
            return True, json.loads(body)["nonce"]

        def is_200(resp, _body):
            return resp.status == 200, True

        # Warm-up: isolate start, tier-up, every shard's object created (issuing and consuming
        # both, whichever of them touches the store).
        _, warm_nonces = phase.run(min(200, args.requests), issue, got_nonce)
        warm_tokens = [hs256({"did": "bench", "exp": exp, "nonce": n}) for n in warm_nonces]
        phase.run(len(warm_tokens),
                  lambda i: ("GET", "/bench/consume", {"approov-token": warm_tokens[i]}), is_200)

        issue_stats, nonces = phase.run(args.requests, issue, got_nonce)
        if len(set(nonces)) != len(nonces):
            raise Failed("the issue phase returned the same nonce twice")
        tokens = [hs256({"did": "bench", "exp": exp, "nonce": n}) for n in nonces]
        consume_stats, _ = phase.run(
            len(tokens),
            lambda i: ("GET", "/bench/consume", {"approov-token": tokens[i]}),
            is_200,
        )
        plain = hs256({"did": "bench", "exp": exp})
        baseline_stats, _ = phase.run(
            args.requests,
            lambda i: ("GET", "/bench/baseline", {"plain-token": plain}),
            is_200,
        )
        # Single use held under load: every consumed nonce is refused the second time.
        replays = [get(served.port, "GET", "/bench/consume", {"approov-token": t})
                   for t in tokens[:20]]
        if not all(s == 401 for s in replays):
            raise Failed(f"replayed nonces were not all refused: {replays}")
    finally:
        served.stop()
    return {"issue": issue_stats, "consume": consume_stats, "baseline": baseline_stats}


def machine_note(args):
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    runtime = ("workerd serve of the bundled Worker, no dev proxy (local workerd, all Durable "
               "Objects in one process)" if args.runtime == "workerd" else
               "wrangler dev (local workerd, all Durable Objects in one process)")
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "runtime": runtime,
        "client": f"{args.concurrency} keep-alive connections, Python threads, same machine; "
                  "origin in its own Python process",
        "quiet_machine": args.quiet_machine,
        "note": (
            "quiet machine: nothing else ran during the measurement"
            if args.quiet_machine
            else "SHARED machine: other engineers' builds and tests ran at the same time; "
            "these numbers prove the benchmark works, they are not the final ones"
        )
        + ". Local workerd runs every Durable Object in one process and the Python client "
        "shares the same cores, so shard scaling seen here is bounded; on Cloudflare each "
        "shard is its own object.",
    }


def dash(value) -> str:
    return "–" if value is None else str(value)


def table(runs: dict) -> str:
    header = (f"{'shards':>6} | {'phase':<8} | {'ok':>5} | {'fail':>4} | {'median ms':>9} | "
              f"{'p99 ms':>7} | {'req/s':>7} | {'CPU us/req':>10} | {'store files':>11} | "
              f"{'rows added':>10}")
    lines = [header, "-" * len(header)]
    for shards, phases in runs.items():
        for name, s in phases.items():
            cpu = s.get("cpu_us_per_request")
            lines.append(
                f"{shards:>6} | {name:<8} | {s['ok']:>5} | {s['failed']:>4} | "
                f"{s['median_ms'] or 0:>9.2f} | {s['p99_ms'] or 0:>7.2f} | "
                f"{s['throughput_rps'] or 0:>7.1f} | {dash(cpu):>10} | "
                f"{dash(s.get('store_files_written')):>11} | {dash(s.get('store_rows_added')):>10}"
            )
    return "\n".join(lines)


def _terminate(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def main():
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,4,16", help="comma-separated shard counts")
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound per phase")
    parser.add_argument("--runtime", choices=["workerd", "wrangler"], default="workerd",
                        help="workerd: the bundle served by workerd directly (default); "
                             "wrangler: `wrangler dev`, as the runs before issue 19")
    parser.add_argument("--quick", action="store_true",
                        help="300 requests per phase, 15 s bound: a smoke run")
    parser.add_argument("--port", type=int, default=0,
                        help="origin port (compiled into the builds; default: free)")
    parser.add_argument("--build-dir", type=Path,
                        help="keep the builds here (build-<shards>) and reuse those made for the "
                             "same --port")
    parser.add_argument("--tolerate-failures", action="store_true",
                        help="count unexpected answers instead of stopping at the first")
    parser.add_argument("--store", choices=["tmpfs", "disk"], default="tmpfs",
                        help="where the Durable Objects' SQLite files live: tmpfs (/dev/shm, the "
                             "default: local workerd runs SQLite on its event loop, so on disk "
                             "every commit's fsync stalls the whole process and the figures "
                             "follow the disk's latency under other load) or disk (the scratch "
                             "folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--out", help="JSON results file (default: benches/results/"
                        "nonce_load-workerd.json, or nonce_load.json for --runtime wrangler)")
    parser.add_argument(
        "--quiet-machine",
        action="store_true",
        help="record that nothing else ran during the measurement",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.max_seconds = 300, 15.0
    if args.build_dir and not args.port:
        parser.error("--build-dir needs --port (the origin's URL is compiled into the builds)")
    shard_counts = [int(s) for s in args.shards.split(",")]
    note = machine_note(args)
    run_started = time.perf_counter()

    origin = Origin(args.port)
    workdir = Path(tempfile.mkdtemp(prefix="attestgate-bench-"))
    store_dir = workdir
    if args.store == "tmpfs":
        if not Path("/dev/shm").is_dir():
            sys.exit("--store tmpfs: no /dev/shm here (use --store disk)")
        store_dir = Path(tempfile.mkdtemp(prefix="attestgate-bench-store-", dir="/dev/shm"))
    runs = {}
    try:
        if args.build_dir:
            args.build_dir = args.build_dir.resolve()
            args.build_dir.mkdir(parents=True, exist_ok=True)
        builds = {s: build(s, origin.base, workdir, args.build_dir) for s in shard_counts}
        for shards in shard_counts:
            print(f"  running {shards} shard(s) on {args.runtime}", file=sys.stderr)
            runs[shards] = bench_one(shards, builds[shards], store_dir, args)
            print(table({shards: runs[shards]}).split("\n", 2)[2], file=sys.stderr)
    except Failed as e:
        sys.exit(f"nonce_load: {e}")
    finally:
        origin.stop()
        if args.keep:
            print(f"scratch folders kept: {workdir} {store_dir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(store_dir, ignore_errors=True)

    print(table(runs))
    command = "source scripts/env.sh && .venv/bin/python benches/nonce_load.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    out = Path(args.out) if args.out else RESULTS[args.runtime]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "nonce_load",
                "command": command,
                "parameters": {
                    "requests_per_phase": args.requests,
                    "concurrency": args.concurrency,
                    "max_seconds_per_phase": args.max_seconds,
                    "runtime": args.runtime,
                    "store": args.store,
                },
                "machine": note,
                "duration_s": round(time.perf_counter() - run_started, 1),
                "results": {str(k): v for k, v in runs.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
