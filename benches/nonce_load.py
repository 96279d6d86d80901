#!/usr/bin/env python3
"""Nonce-store load benchmark: challenge issue and nonce consume against `wrangler dev`.

One command (from the repository root):

    source scripts/env.sh && .venv/bin/python benches/nonce_load.py

For each shard count (default 1, 4, 16) it builds the Worker with the policy in
benches/nonce_load/policy (`nonce_shards` filled in, via ATTESTGATE_POLICY_DIR), starts
`wrangler dev` on loopback with a throw-away --persist-to, and drives three phases with a bounded
number of requests, a bounded time and a fixed number of concurrent keep-alive connections:

- issue:    POST {challenge_path}                     (no store write since issue 12)
- consume:  GET /bench/consume, HS256 token whose `nonce` claim is one of the issued nonces
            (verify + one Durable Object consume + forward to a local origin)
- baseline: GET /bench/baseline, the same HS256 token kind without a nonce
            (verify + forward; no store call) - what consume costs beyond the store

It prints a table (median and p99 latency in ms, throughput in requests/s) and writes JSON to
benches/results/nonce_load.json with a note of the machine. Tokens are minted here with the
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
import shutil
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
RESULTS = ROOT / "benches" / "results" / "nonce_load.json"
CHALLENGE_PATH = "/.well-known/attestgate/challenge"

# Reuse the e2e harness: `Gateway` runs wrangler dev exactly as the tests do, `LocalServers` is
# the recording loopback origin. Importing conftest does not run pytest.
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import APPROOV_SECRET, Gateway  # noqa: E402
from servers import LocalServers  # noqa: E402


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HS256_HEADER = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def hs256(claims: dict) -> str:
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{HS256_HEADER}.{payload}".encode()
    sig = hmac.new(APPROOV_SECRET, signing_input, hashlib.sha256).digest()
    return f"{HS256_HEADER}.{payload}.{b64url(sig)}"


# ---- build and run ------------------------------------------------------------------------------

def build(shards: int, origin: str, workdir: Path) -> Path:
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
    out = workdir / f"build-{shards}"
    shutil.copytree(ROOT / "build", out)
    print(f"  built for {shards} shard(s) in {time.time() - started:.0f}s", file=sys.stderr)
    return out


# ---- load ---------------------------------------------------------------------------------------

class Phase:
    """Run `make_request(i)` for i in range(n) over `concurrency` keep-alive connections."""

    def __init__(self, port: int, concurrency: int, max_seconds: float):
        self.port = port
        self.concurrency = concurrency
        self.max_seconds = max_seconds

    def run(self, n: int, make_request, check):
        next_index = iter(range(n))
        lock = threading.Lock()
        latencies: list[float] = []
        failures: list[str] = []
        results: list = [None] * n
        deadline = time.perf_counter() + self.max_seconds

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            while time.perf_counter() < deadline:
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
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    with lock:
                        failures.append(type(e).__name__)
                    continue
                elapsed = (time.perf_counter() - t0) * 1000
                ok, value = check(resp, body)
                with lock:
                    if ok:
                        latencies.append(elapsed)
                        results[i] = value
                    else:
                        failures.append(f"{resp.status}")
            conn.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        return summarise(latencies, failures, wall), [r for r in results if r is not None]


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


def bench_one(shards, build_dir, workdir, args):
    persist = workdir / f"persist-{shards}"
    persist.mkdir()
    gw = Gateway(workdir, persist, build_dir).start()
    try:
        phase = Phase(gw.port, args.concurrency, args.max_seconds)
        exp = int(time.time()) + 3000

        def issue(i):
            # One client address per request: the challenge endpoint is rate-limited per
            # address (docs/nonces.md); `wrangler dev` keeps a CF-Connecting-IP the client sent.
            address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            return "POST", CHALLENGE_PATH, {"cf-connecting-ip": address}

        def got_nonce(resp, body):
            if resp.status != 200:
                return False, None
            return True, json.loads(body)["nonce"]

        def is_200(resp, _body):
            return resp.status == 200, True

        # Warm-up: isolate start, every shard's object created.
        phase.run(min(200, args.requests), issue, got_nonce)

        issue_stats, nonces = phase.run(args.requests, issue, got_nonce)
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
        replays = [gw.request("GET", "/bench/consume", {"approov-token": t}).status for t in tokens[:20]]
        assert all(s == 401 for s in replays), replays
    finally:
        gw.stop()
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
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "runtime": "wrangler dev (local workerd, all Durable Objects in one process)",
        "client": f"{args.concurrency} keep-alive connections, Python threads, same machine",
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,4,16", help="comma-separated shard counts")
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound per phase")
    parser.add_argument("--out", default=str(RESULTS), help="JSON results file")
    parser.add_argument(
        "--quiet-machine",
        action="store_true",
        help="record that nothing else ran during the measurement",
    )
    args = parser.parse_args()
    shard_counts = [int(s) for s in args.shards.split(",")]
    note = machine_note(args)

    origin = LocalServers().start()
    workdir = Path(tempfile.mkdtemp(prefix="attestgate-bench-"))
    runs = {}
    try:
        builds = {s: build(s, origin.base, workdir) for s in shard_counts}
        for shards in shard_counts:
            print(f"  running {shards} shard(s)", file=sys.stderr)
            runs[shards] = bench_one(shards, builds[shards], workdir, args)
    finally:
        origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    header = f"{'shards':>6} | {'phase':<8} | {'ok':>5} | {'fail':>4} | {'median ms':>9} | {'p99 ms':>7} | {'req/s':>7}"
    print(header)
    print("-" * len(header))
    for shards, phases in runs.items():
        for name, s in phases.items():
            print(
                f"{shards:>6} | {name:<8} | {s['ok']:>5} | {s['failed']:>4} | "
                f"{s['median_ms'] or 0:>9.2f} | {s['p99_ms'] or 0:>7.2f} | {s['throughput_rps'] or 0:>7.1f}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "nonce_load",
                "command": "source scripts/env.sh && .venv/bin/python benches/nonce_load.py",
                "parameters": {
                    "requests_per_phase": args.requests,
                    "concurrency": args.concurrency,
                    "max_seconds_per_phase": args.max_seconds,
                },
                "machine": note,
                "results": {str(k): v for k, v in runs.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
