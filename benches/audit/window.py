#!/usr/bin/env python3
"""The async decision log's loss window for a lone request, on direct workerd (issue 17;
docs/performance.md, "Async decision log: where the time went (session 7)").

    source scripts/env.sh
    AB_PORT=47511 .venv/bin/python benches/ab.py build NAME      # a build for that port
    AB_PORT=47511 .venv/bin/python benches/audit/window.py NAME

One workerd process; REPEAT (8) times: a request on the bench's `audit = "async"` route
(`/v1/audited/42`) after GAP (3.0) seconds without one, then the log's committed size (its
SQLite, read-only) polled every 5 ms until it holds the record. Prints the time from the
response to the record committed, per request and the median (min-max): for a lone request
that is the flush timer (`gate::audit::batch::MAX_WAIT`) plus one append, the window in which
an isolate's death loses the record.
"""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))
import workerd as B  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swap import log_rows  # noqa: E402

PORT = int(os.environ.get("AB_PORT", "47123"))
REPEAT = int(os.environ.get("REPEAT", "8"))
GAP = float(os.environ.get("GAP", "3.0"))


def size(folder: Path) -> int:
    """The AuditLog's size (0 before it has one)."""
    rows = log_rows(folder)
    return rows[0] if rows else 0


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = ROOT / "benches" / ".ab" / "builds" / sys.argv[1]
    if not (build / "index.js").exists():
        sys.exit(f"no build {build} (benches/ab.py build NAME, with the same AB_PORT)")
    servers = B.LocalServers(port=PORT)
    servers.start()
    work = ROOT / "benches" / ".ab" / "window"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    worker = None
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        vars_ = {"ATTESTGATE_LOG": "decisions",
                 "ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                 "ATTESTGATE_SIGNING_KEY": B.signing_key_json(), "BENCH_INJECT_KEY": B.INJECT_KEY}
        worker = B.DirectWorker("attestgate", B.attestgate_config(work, build, False), work, vars_)
        worker.start()
        servers.recorder.add = lambda entry: None
        now = int(time.time())
        tokens = [servers.issuer.mint(B.KIDS["ES256"], **B.good_claims(now))
                  for _ in range(REPEAT + 1)]
        waits = []
        for i, token in enumerate(tokens):
            time.sleep(GAP)
            before = size(work)
            status, _ = worker.get(B.AUDIT_PATH, B.bearer(token))
            t = time.perf_counter()
            if status != 200:
                sys.exit(f"{B.AUDIT_PATH}: {status}")
            while size(work) <= before:
                if time.perf_counter() - t > 30:
                    sys.exit("the record never reached the log")
                time.sleep(0.005)
            ms = (time.perf_counter() - t) * 1000
            if i:  # the first one also waits for the object's first start
                waits.append(ms)
                print(f"request {i}/{REPEAT}: committed {ms:.0f} ms after its response", flush=True)
        print(f"== {sys.argv[1]}: a lone request's record committed {statistics.median(waits):.0f} ms "
              f"({min(waits):.0f}-{max(waits):.0f}) after its response, {REPEAT} requests, "
              f"{GAP} s apart")
    finally:
        if worker:
            try:
                worker.stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        servers.stop()


if __name__ == "__main__":
    main()
