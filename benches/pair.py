#!/usr/bin/env python3
"""The CPU cost of one route feature, paired: two workerd processes of ONE attestgate build, one
sent path A and the other path B, request by request, the roles swapped every round.

benches/workerd.py measures a feature as two batches of one process one after the other (the
"deny, fresh view" batch, then the "deny, no check" batch), so whatever else the machine does in
between lands on one side only: on a shared machine its per-round ratio spread ±15%. Here both
paths are served at the same time, interleaved one request each, so drift and background load
hit both alike; a process's own bias (two processes of the same build differ by a few per cent,
benches/ab.py) is cancelled by swapping the roles every round: the cost of a pair of rounds is
the mean of its two differences.

    source scripts/env.sh
    AB_PORT=47511 .venv/bin/python benches/ab.py build base        # the bench policies, once
    AB_PORT=47511 .venv/bin/python benches/pair.py base deny       # /v1/orders-deny/42 vs /v1/orders/42
    AB_PORT=47511 .venv/bin/python benches/pair.py base inject     # /v1/inject/42 vs /v1/orders/42
    AB_PORT=47511 .venv/bin/python benches/pair.py base same       # /v1/orders/42 on both: the noise floor
    (also: strict, the deny route that asks the store on every request; deny-wide, the deny
    check of a token with 19 deny keys; audit, the route with audit = "async"; mask, a 10 KB
    JSON answer masked against the same answer unmasked)

Environment: ROUNDS (16, even), N requests per process per round (300), WARM (600 warm-up
requests per process and path: both processes serve both paths before anything is timed),
AB_PORT (47123; the port the build was made for, benches/ab.py), JSON (a file for the per-round
figures). Every request carries a distinct ES256 token (minted ahead with joserfc); any answer
other than 200 stops the run.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
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
def wide_claims(now: int) -> dict:
    """The bench token with every kind of deny key: a session, a device, an e-mail address, a
    client and a 12-level delegation chain (19 keys; the "deny-wide" pair)."""
    act: dict = {"sub": "agent:level-12"}
    for level in range(11, 0, -1):
        act = {"sub": f"agent:level-{level}", "act": act}
    return dict(B.good_claims(now), act=act, sid="session-7", did="device-7",
                email="Alice@Example.com", client_id="bench-client")


# name -> (path A: with the feature, path B: the same request without it[, the tokens' claims])
PAIRS = {
    "deny": (B.DENY_PATH, B.ORDER_PATH),
    "inject": (B.INJECT_PATH, B.ORDER_PATH),
    "same": (B.ORDER_PATH, B.ORDER_PATH),
    # deny_check = "strict": the store asked on every request (one call per shard of its keys).
    "strict": ("/v1/orders-deny-strict/42", B.ORDER_PATH),
    # The deny check of a token with 19 keys (what its per-key cost multiplies).
    "deny-wide": (B.DENY_PATH, B.ORDER_PATH, wide_claims),
    # Issue 17: audit = "async" (the record queued, sequenced by the AuditLog object in the same
    # process, so its work is counted) vs the same request on the route without the log.
    "audit": (B.AUDIT_PATH, B.ORDER_PATH),
    # Issue 18: a 10 KB JSON answer masked (3 rules) vs the same answer on a route without a mask.
    "mask": ("/v1/customers/7", "/v1/records/7"),
}

# The origin's answer for the mask pair's paths: the mask workload's 10 KB document.
CANNED = {path: {"body": B.MaskWorkload.document(), "headers": {"content-type": "application/json"}}
          for path in PAIRS["mask"]}


def stats(values: list[float]) -> str:
    v = sorted(values)
    return f"{statistics.median(v):+.1f} ({v[0]:+.1f} .. {v[-1]:+.1f}, n={len(v)})"


def ratio_stats(values: list[float]) -> str:
    v = sorted(values)
    return f"{statistics.median(v):.3f} ({v[0]:.3f} .. {v[-1]:.3f})"


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[2] not in PAIRS:
        sys.exit(__doc__)
    build = AB / "builds" / sys.argv[1]
    path_a, path_b, *claims = PAIRS[sys.argv[2]]
    claims_of = claims[0] if claims else B.good_claims
    rounds = int(os.environ.get("ROUNDS", "16"))
    n = int(os.environ.get("N", "300"))
    warm = int(os.environ.get("WARM", "600"))
    if rounds % 2:
        sys.exit("ROUNDS must be even (the roles swap every round)")
    servers = B.LocalServers(port=PORT)
    servers.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    servers.start()
    servers.canned.update(CANNED)
    procs: list[B.DirectWorker] = []
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        work = AB / "pair"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        env = {"ATTESTGATE_LOG": "decisions",
               "ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
               "ATTESTGATE_SIGNING_KEY": B.signing_key_json(),
               "BENCH_INJECT_KEY": B.INJECT_KEY}
        for i in range(2):
            (work / f"p{i}").mkdir()
            procs.append(B.DirectWorker(
                "attestgate", B.attestgate_config(work / f"p{i}", build, False), work / f"p{i}",
                env))
        for p in procs:
            p.start()
        # A distinct token for every request: warm-up (both paths on both processes) + rounds.
        total = 2 * (2 * warm + rounds * n)
        started = time.perf_counter()
        now = int(time.time())
        tokens = [servers.issuer.mint(B.KIDS["ES256"], **claims_of(now)) for _ in range(total)]
        print(f"minted {total} ES256 tokens in {time.perf_counter() - started:.0f} s", flush=True)
        servers.recorder.add = lambda entry: None
        used = iter(range(total))

        def item(label, proc, path):
            return (label, proc, lambda k: (path, B.bearer(tokens[next(used)]), 200))

        for path in (path_a, path_b):
            batch = B.interleaved_batch([item(f"p{i}", p, path) for i, p in enumerate(procs)],
                                        warm)
            if batch.unexpected:
                sys.exit(f"warm-up {path}: " + "; ".join(batch.examples))
        diffs, ratios, rows = [], [], []
        for r in range(rounds):
            a, b = (procs[0], procs[1]) if r % 2 == 0 else (procs[1], procs[0])
            plan = [item("a", a, path_a), item("b", b, path_b)]
            if (r // 2) % 2:  # the order within a pair of requests also alternates
                plan.reverse()
            began = time.perf_counter()
            batch = B.interleaved_batch(plan, n)
            wall = time.perf_counter() - began
            if batch.unexpected:
                sys.exit(f"round {r + 1}: " + "; ".join(batch.examples))
            ua, ub = batch.user_us["a"], batch.user_us["b"]
            diffs.append(ua - ub)
            ratios.append(ua / ub)
            rows.append({"round": r + 1, "a_proc": procs.index(a), "a_us": ua, "b_us": ub,
                         "wall_s": wall, "accounting": sorted(batch.accounting)})
            print(f"round {r + 1}/{rounds}: A {path_a} on p{procs.index(a)} {ua:.0f} us, "
                  f"B {path_b} {ub:.0f} us, A-B {ua - ub:+.0f} us ({wall:.1f} s)", flush=True)
        pairs = [(diffs[i] + diffs[i + 1]) / 2 for i in range(0, rounds, 2)]
        pair_ratios = [(ratios[i] + ratios[i + 1]) / 2 for i in range(0, rounds, 2)]
        base = statistics.median(row["b_us"] for row in rows)
        print(f"== {sys.argv[2]}: A {path_a} vs B {path_b}, {rounds} rounds x {n} requests per "
              f"process, one build ({sys.argv[1]}), roles swapped every round")
        walls = sorted(row["wall_s"] for row in rows)
        print(f"  B (without), us CPU/request: median {base:.0f}; a round takes "
              f"{statistics.median(walls):.1f} s ({walls[0]:.1f} .. {walls[-1]:.1f})")
        print(f"  A - B per round, us:         {stats(diffs)}")
        print(f"  A - B per pair of rounds:    {stats(pairs)}")
        ci = B.mean_ci(pairs)
        if ci:  # (two pairs at least)
            print(f"  A - B, mean of the pairs:    {ci['mean']:+.1f} ± {ci['ci95']:.1f} us "
                  f"(95%), {1 + ci['mean'] / base:.3f} of B")
        print(f"  A / B per round:             {ratio_stats(ratios)}")
        print(f"  A / B per pair of rounds:    {ratio_stats(pair_ratios)}")
        out = os.environ.get("JSON")
        if out:
            Path(out).write_text(json.dumps({
                "pair": sys.argv[2], "path_a": path_a, "path_b": path_b, "build": sys.argv[1],
                "rounds": rounds, "n": n, "warm": warm, "per_round": rows,
                "loadavg": open("/proc/loadavg").read().split()[:3]}, indent=1))
    finally:
        B.stop_all(procs)
        servers.stop()


if __name__ == "__main__":
    main()
