#!/usr/bin/env python3
"""Paired A/B of attestgate builds: several builds and the jose Worker served by workerd side by
side, requests interleaved one by one, CPU per request of each Worker's process per round.

Two builds of the same source differ by up to ±2% per run here (measured: the same build twice);
a change smaller than that needs several runs. Used for the "What changed" table of
docs/performance.md.

    source scripts/env.sh
    .venv/bin/python benches/ab.py build before      # builds the working tree into benches/.ab/builds/before
    # ... change the code ...
    .venv/bin/python benches/ab.py build after
    .venv/bin/python benches/ab.py run before after  # ratios to jose and to the first build

Environment: ROUNDS (8), N requests per Worker per round and token (300), WARM (1500 warm-up
requests per Worker and token), ALGS (ES256,EdDSA), AB_PORT (47123: the origin/issuer port,
compiled into the builds' policies, so builds and runs must use the same), WORKLOAD (unique: a
distinct token for every request, minted ahead with joserfc; session: each token used 20 times,
round-robin over 50 sessions, as benches/workerd.py; one: the same token for every request, as
the runs before issue 19; public: GET /healthz without a token, attestgate's public route). At
build time, LOG_SAMPLE=N builds with `[gateway] log_allow_sample = N` (1 in N allowed decision
lines written; issue 19 item 3).

FLOORS=1 adds the pass-through floor and floor-log (benches/workerd.py) and prints each Worker's
ratio to the floor too (the public route's target). COPIES=N serves each build by N workerd
processes (named build#1..N) and reports the build as the mean of its copies per round: each
process has a baseline of its own (up to ~30 µs apart on a busy machine, docs/performance.md),
which a difference of a few tens of µs between two builds would otherwise carry.
"""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workerd as B  # noqa: E402

AB = HERE / ".ab"
PORT = int(os.environ.get("AB_PORT", "47123"))


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("build", "run"):
        sys.exit(__doc__)
    servers = B.LocalServers(port=PORT)
    servers.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    servers.start()
    workers: dict[str, B.Worker] = {}
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        servers.issuer.add_key("EdDSA", "bench-eddsa")
        if sys.argv[1] == "build":
            dest = AB / "builds" / sys.argv[2]
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            policies = B.fill_policies(servers, AB / "policies")
            sample = os.environ.get("LOG_SAMPLE")
            if sample:
                gw = policies / "gateway.toml"
                text = gw.read_text()
                gw.write_text(text.replace("[gateway]\n", f"[gateway]\nlog_allow_sample = {int(sample)}\n", 1))
            secs = B.build_attestgate(policies, dest)
            print(f"built {sys.argv[2]} in {secs:.0f} s")
            return
        names = sys.argv[2:]
        rounds = int(os.environ.get("ROUNDS", "8"))
        n = int(os.environ.get("N", "300"))
        warm = int(os.environ.get("WARM", "1500"))
        algs = os.environ.get("ALGS", "ES256,EdDSA").split(",")
        workload = os.environ.get("WORKLOAD", "unique")
        if workload not in ("unique", "session", "one", "public"):
            sys.exit(f"WORKLOAD={workload}: unique, session, one or public")
        if workload == "public":
            algs = ["public"]  # one batch per round, no token
        copies = max(1, int(os.environ.get("COPIES", "1")))
        floors = os.environ.get("FLOORS") == "1"
        tokens = B.mint_tokens(servers)
        servers.recorder.add = lambda entry: None
        work = AB / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        nonce_key = {"ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}
        copy_of = {}
        for name in names:
            for c in range(1, copies + 1):
                label = name if copies == 1 else f"{name}#{c}"
                copy_of[label] = name
                (work / label).mkdir()
                workers[label] = B.DirectWorker(
                    "attestgate", B.attestgate_config(work / label, AB / "builds" / name, False),
                    work / label, nonce_key)
        (work / "jose").mkdir()
        workers["jose"] = B.DirectWorker("jose", B.jose_config(work), work / "jose", dict(
            ORIGIN=servers.base, ISSUER=servers.issuer.issuer, JWKS_URI=servers.jwks_uri))
        if floors:
            for fl in ("floor", "floor-log"):
                workers[fl] = B.DirectWorker(fl, B.floor_config(work, with_log=fl == "floor-log"),
                                             work, {"ORIGIN": servers.base})
        for w in workers.values():
            w.start()
        path = B.PUBLIC_PATH if workload == "public" else B.ORDER_PATH
        headers = {alg: {"authorization": f"Bearer {tokens[alg]}"} for alg in tokens}
        headers["public"] = {}
        for alg in algs:
            for name, w in workers.items():
                status, body = w.get(path, headers[alg])
                if status != 200:
                    sys.exit(f"{name} {alg}: {status} {body[:200]!r}")
        total = warm + rounds * n
        kind = {"unique": B.UniqueWorkload, "session": B.SessionWorkload}.get(workload)
        loads = {alg: kind(servers, alg, list(workers), total) if kind else None for alg in algs}

        def plan(alg, order):
            if loads[alg] is None:
                return [(name, workers[name], path, headers[alg], 200) for name in order]
            return B.workload_plan(workers, loads[alg], order)

        for alg in algs:
            batch = B.interleaved_batch(plan(alg, list(workers)), warm, 0)
            if batch.unexpected:
                sys.exit(f"warm-up {alg}: {batch.unexpected} answers other than 200: "
                         + "; ".join(batch.examples))
        order = list(workers)
        res = {alg: {name: [] for name in workers} for alg in algs}
        for r in range(rounds):
            for alg in algs:
                turn = order[r % len(order):] + order[:r % len(order)]
                batch = B.interleaved_batch(plan(alg, turn), n, warm + r * n)
                if batch.unexpected:
                    sys.exit(f"round {r + 1} {alg}: {batch.unexpected} answers other than 200: "
                             + "; ".join(batch.examples))
                for name in turn:
                    res[alg][name].append(batch.user_us[name])
            print(f"round {r + 1}/{rounds}", flush=True)
        for alg in algs:
            # A build served by several copies: the mean of its copies in each round.
            for name in names if copies > 1 else []:
                mine = [res[alg][label] for label, of in copy_of.items() if of == name]
                res[alg][name] = [statistics.fmean(v) for v in zip(*mine)]
            label = {"unique": "unique tokens", "session": "session tokens", "one": "one token",
                     "public": "public route"}
            print(f"== {alg}, {label[workload]}: us CPU/request, ratio to jose, ratio to "
                  f"{names[0]}" + (", ratio to the floor" if floors else "")
                  + f" (median (min-max) of {rounds} rounds"
                  + (f"; a build is the mean of its {copies} copies" if copies > 1 else "") + ")")
            shown = list(workers) if copies == 1 else names + [w for w in workers if w not in copy_of]
            for name in shown:
                vals = res[alg][name]
                to_jose = [a / b for a, b in zip(vals, res[alg]["jose"])]
                to_first = [a / b for a, b in zip(vals, res[alg][names[0]])]
                line = (f"  {name:14s} {statistics.median(vals):6.0f}  "
                        f"{statistics.median(to_jose):.3f} ({min(to_jose):.3f}-{max(to_jose):.3f})  "
                        f"{statistics.median(to_first):.3f} ({min(to_first):.3f}-{max(to_first):.3f})")
                if floors:
                    to_floor = [a / b for a, b in zip(vals, res[alg]["floor"])]
                    line += (f"  {statistics.median(to_floor):.3f} "
                             f"({min(to_floor):.3f}-{max(to_floor):.3f})")
                print(line)
    finally:
        B.stop_all(workers)
        servers.stop()


if __name__ == "__main__":
    main()
