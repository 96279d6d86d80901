#!/usr/bin/env python3
"""Store round trips on direct workerd (issues 15-17): session budget, deny store, decision log.

One command (from the repository root):

    source scripts/env.sh && .venv/bin/python benches/store_load.py --out benches/results/store-load-dec2026
    .venv/bin/python benches/store_load.py --quick           # a smoke run (~3 min, log to 20k)
    .venv/bin/python benches/store_load.py --help

It builds the Worker (release, scripts/build.sh) with the bench policies (benches/policies/, whose
stores.toml has the routes below; --build-dir reuses a build made for the same --port), serves the
bundle with the workerd binary itself (`wrangler deploy --dry-run` + a generated config: every
Durable Object binding of wrangler.toml, SQLite storage on tmpfs; no wrangler dev, no proxy), and
drives it over loopback keep-alive connections. Tokens are minted with joserfc by the end-to-end
tests' issuer (tests/e2e/servers.py, in this process: its JWKS is fetched once per isolate); the
origin is the same LocalServers in its own process (it shares no interpreter lock with the
client). Every request is a verified GET (ES256, a distinct token per request unless said) of one
of these routes (benches/policies/stores.toml), so the difference between two routes is the
store's round trip:

  /v1/bench-store/plain/{id}        verified and forwarded, no store call (the baseline)
  /v1/bench-store/budget/{id}       issue 15: + one call to the session's SessionBudget object
  /v1/bench-store/deny-strict/{id}  issue 16: + a lookup in the deny store on every request (one
                                    call per deny shard the request's keys fall in)
  /v1/bench-store/deny-cached/{id}  issue 16: the isolate's view; a request after the view is older
                                    than [deny] propagation_secs refreshes it (snapshot calls)
  /v1/bench-store/audit-sync/{id}   issue 17: + one append to the AuditLog sequencer before the
                                    forward (the answer names the record's index)
  /v1/bench-store/audit-async/{id}  issue 17: the record queued and sequenced in batches after
                                    the response (waitUntil)
  /.well-known/attestgate/deny...   issue 16: the operator API's writes and lookups (a token of
                                    the bench's [operator] provider), against operator/whoami
                                    (the same authentication, no store call)

Phases, in this order by default (growth before audit, whose requests would otherwise have passed
the first size already; audit then runs on the grown log), each reported as p50 / p99 latency
(ms), requests per second and the workerd process's CPU per request:
  1. budget:  plain vs budget interleaved request by request on one connection; then each alone
              over --concurrency connections (all calls of one session: one object, serialised).
  2. deny:    plain vs deny-strict interleaved; the cached route right after its view went stale
              (a shard unchanged, and a shard changed by an operator add just before), against the
              next (fresh) request; operator add, lookup and remove, each interleaved with whoami;
              adds and removes over --concurrency connections.
  3. growth:  the log filled to each of --sizes (default 10k, 100k, 1M records) as fast as it
              takes them (--fill-procs client processes, each with --fill-threads connections,
              sending tokenless requests to the async route: each 401 is a decision record,
              sequenced in batches, with no origin hit and no verification), then at that size the
              sync round trip again (plain vs audit-sync interleaved) and the async window. The
              fill's rate and time, and the CPU per record, are reported per step.
  4. audit:   plain vs audit-sync interleaved; audit-sync alone over --concurrency connections
              (one append per request); audit-async over --concurrency connections for --window
              seconds (batched appends: records per second, read as the growth of the log).

--time-calls: the bundle's own entry behind a thin JavaScript module that times
every Durable Object stub.fetch the Worker makes, on the Worker's clock, per binding: the store
call itself as the Worker sees it, and how many calls a request made (a strict deny lookup asks
each shard its keys fall in), and in the async windows the batch appends (records per batch,
ms per batch, us per record). The Worker's clock has whole milliseconds here: read the means.

The log's size is read only through the Worker's public behaviour: the index a sync answer
names (attestgate-log-index) is the size before it. Nothing here depends on how the AuditLog
object stores records.

Bounded by design: 127.0.0.1 only; every phase is bounded in requests and time; a global deadline
(--max-minutes) ends the run with what it measured (the growth step it reached is reported); it
stops every process it started (workerd, the origin, the fill clients). Any unexpected answer
stops the run. The machine note in the JSON says whether others were using the machine
(--quiet-machine); figures of a shared machine show that the tool works, not final numbers.

Caveat, measured not assumed: local workerd runs the Worker and every Durable Object in one
process (on Cloudflare each object is its own, placed near its callers), so a "round trip" here
is an in-process hop with its SQLite commit on tmpfs; the client and the origin share the
machine's cores with it.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "benches"))

from procs import free_port, stop_group  # noqa: E402
from servers import LocalServers  # noqa: E402
from workerd import (  # noqa: E402
    INJECT_KEY, KIDS, DirectWorker, attestgate_config, build_attestgate, cpu_delta_ns,
    good_claims, proc_cpu, signing_key_json)
from nonce_load import Origin  # noqa: E402

BASE = "/v1/bench-store"
DENY_API = "/.well-known/attestgate/deny"
WHOAMI = "/.well-known/attestgate/operator/whoami"
OPERATOR_AUD = "https://gateway.bench.attestgate.test"  # benches/policies/stores.toml
LOG_INDEX = "attestgate-log-index"


class Failed(Exception):
    pass


class Deadline(Exception):
    pass


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


# ---- the Worker ---------------------------------------------------------------------------------

def durable_objects() -> tuple[list[tuple[str, str]], dict[str, bool]]:
    """(binding, class) of every Durable Object binding in wrangler.toml, and {class: SQLite?}
    from its migrations: whatever stores main has when this runs."""
    conf = tomllib.loads((ROOT / "wrangler.toml").read_text())
    bindings = [(b["name"], b["class_name"])
                for b in conf.get("durable_objects", {}).get("bindings", [])]
    classes: dict[str, bool] = {}
    for m in conf.get("migrations", []):
        for c in m.get("new_sqlite_classes", []):
            classes[c] = True
        for c in m.get("new_classes", []):
            classes.setdefault(c, False)
    for _, c in bindings:
        classes.setdefault(c, True)
    return bindings, classes


class StoreWorker(DirectWorker):
    """DirectWorker with every Durable Object binding of wrangler.toml (benches/workerd.py's
    config binds the ones its workloads use)."""

    def _config(self, bundle: Path) -> Path:
        modules = self._modules(bundle)
        bindings = [f'(name = "{k}", text = {json.dumps(v)})' for k, v in self.vars.items()]
        do_bindings, classes = durable_objects()
        bindings += [f'(name = "{n}", durableObjectNamespace = "{c}")' for n, c in do_bindings]
        namespaces = ", ".join(
            f'(className = "{c}", uniqueKey = "attestgate-{c}", enableSql = {str(sql).lower()})'
            for c, sql in classes.items())
        persist = self.workdir / f"persist-{self.name}"
        persist.mkdir(exist_ok=True)
        text = f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "private", "local"])),
    (name = "disk", disk = (path = "{persist}", writable = true))
  ],
  sockets = [(name = "http", address = "127.0.0.1:{self.port}", http = (), service = "main")]
);
const worker :Workerd.Worker = (
  modules = [{", ".join(modules)}],
  compatibilityDate = "2026-11-17",
  bindings = [{", ".join(bindings)}],
  globalOutbound = "internet",
  durableObjectNamespaces = [{namespaces}],
  durableObjectStorage = (localDisk = "disk")
);
"""
        path = self.workdir / f"workerd-{self.name}.capnp"
        path.write_text(text)
        return path


# --time-calls: the bundle's own entry behind a thin module that hands the Worker an env whose
# Durable Object namespaces time every stub.fetch (from the call to its answer's headers, on the
# Worker's clock: workerd advances it at I/O, so this is the wall time of the round trip as the
# Worker sees it, in whole or fractional ms as the runtime gives them), and answers
# GET /__store_probe/calls with the times since the last read, per binding. The Durable Object
# classes are the bundle's own (re-exported); nothing of the Worker's code changes.
TIMING_ENTRY_JS = """\
import entry from "./index.js";
export * from "./index.js";
const calls = {};
function timedStub(binding, stub) {
  return {
    id: stub.id,
    name: stub.name,
    fetch(...args) {
      const t0 = performance.now();
      const p = stub.fetch(...args);
      p.then(() => (calls[binding] ??= []).push(performance.now() - t0), () => {});
      return p;
    },
  };
}
function timedNamespace(binding, ns) {
  // workers-rs checks a binding's constructor name.
  class DurableObjectNamespace {
    idFromName(name) { return ns.idFromName(name); }
    idFromString(id) { return ns.idFromString(id); }
    newUniqueId(options) { return ns.newUniqueId(options); }
    get(id, options) { return timedStub(binding, ns.get(id, options)); }
  }
  return new DurableObjectNamespace();
}
let timedEnv = null;
function wrap(env) {
  const out = Object.create(env);
  for (const name of Object.keys(env)) {
    const v = env[name];
    if (v && v.constructor && v.constructor.name === "DurableObjectNamespace") {
      out[name] = timedNamespace(name, v);
    }
  }
  return out;
}
export default {
  fetch(request, env, ctx) {
    if (new URL(request.url).pathname === "/__store_probe/calls") {
      const out = JSON.stringify(calls);
      for (const k of Object.keys(calls)) delete calls[k];
      return new Response(out, { headers: { "content-type": "application/json" } });
    }
    timedEnv ??= wrap(env);
    return entry.fetch(request, timedEnv, ctx);
  },
};
"""


def fill_policies(dest: Path, origin: str, servers: LocalServers) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for template in sorted((ROOT / "benches" / "policies").glob("*.toml")):
        text = (template.read_text().replace("{{ORIGIN}}", origin)
                .replace("{{ISSUER}}", servers.issuer.issuer)
                .replace("{{JWKS_URI}}", servers.jwks_uri))
        (dest / template.name).write_text(text)
    return dest


def deny_bound_secs() -> float:
    """[deny] propagation_secs of the bench policies (default 2)."""
    for f in sorted((ROOT / "benches" / "policies").glob("*.toml")):
        deny = tomllib.loads(f.read_text()).get("deny")
        if deny is not None:
            return float(deny.get("propagation_secs", 2))
    return 2.0


# ---- requests -----------------------------------------------------------------------------------

class Tokens:
    """ES256 agent tokens (scope orders:read, act.sub) and operator tokens, minted by joserfc."""

    def __init__(self, servers: LocalServers):
        self.issuer = servers.issuer
        self.kid = KIDS["ES256"]

    def agent(self) -> str:
        return self.issuer.mint(self.kid, **good_claims(int(time.time())))

    def agents(self, n: int) -> list[str]:
        return [self.agent() for _ in range(n)]

    def operator(self) -> str:
        now = int(time.time())
        return self.issuer.mint(self.kid, typ="JWT", aud=OPERATOR_AUD, sub="ops:bench",
                                scope="attestgate:admin", iat=now, exp=now + 3500)


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


class Req:
    __slots__ = ("label", "method", "path", "headers", "body", "expect")

    def __init__(self, label, method, path, headers, body=None, expect=200):
        self.label, self.method, self.path = label, method, path
        self.headers, self.body, self.expect = headers, body, expect


class Runner:
    """Sends requests over keep-alive connections and times each one (client side: from the
    request's first byte sent to the answer's last byte read)."""

    def __init__(self, port: int, pid: int, deadline: float, time_calls: bool = False):
        self.port = port
        self.pid = pid
        self.deadline = deadline
        self.time_calls = time_calls
        self.last_calls: dict | None = None

    def calls(self) -> dict:
        """--time-calls: the Worker-side times of its Durable Object calls since the last read
        ({binding: [ms]})."""
        _, body = self.get(Req("calls", "GET", "/__store_probe/calls", {}))
        return json.loads(body)

    def check_deadline(self):
        if time.time() > self.deadline:
            raise Deadline()

    def one(self, conn_box: list, r: Req):
        """(status, headers, body, ms) on the connection in conn_box (replaced if it broke)."""
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn = conn_box[0]
        headers = dict(r.headers)
        if r.body is not None:
            headers["content-type"] = "application/json"
        t0 = time.perf_counter()
        try:
            conn.request(r.method, r.path, body=r.body, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            conn_box[0] = None
            raise Failed(f"{r.method} {r.path}: {type(e).__name__}: {e}") from e
        ms = (time.perf_counter() - t0) * 1000
        if resp.getheader("connection", "").lower() == "close":
            conn.close()
            conn_box[0] = None
        return resp.status, resp, body, ms

    def run(self, reqs: list[Req], concurrency: int = 1, on_ok=None, max_seconds: float = 600):
        """Run `reqs` in order over `concurrency` connections. Any answer other than the
        expected status stops the phase (Failed). {label: [ms]}, wall seconds, CPU ns of the
        workerd process."""
        self.check_deadline()
        lat: dict[str, list[float]] = {}
        errors: list[str] = []
        lock = threading.Lock()
        it = iter(range(len(reqs)))
        stop_at = min(time.time() + max_seconds, self.deadline)

        def work():
            box = [None]
            try:
                while not errors and time.time() < stop_at:
                    with lock:
                        i = next(it, None)
                    if i is None:
                        break
                    r = reqs[i]
                    try:
                        status, resp, body, ms = self.one(box, r)
                    except Failed as e:
                        with lock:
                            errors.append(str(e))
                        break
                    if status != r.expect:
                        with lock:
                            errors.append(f"{r.method} {r.path}: {status} (expected {r.expect}) "
                                          f"{body[:160]!r}")
                        break
                    if on_ok:
                        on_ok(r, resp, body)
                    with lock:
                        lat.setdefault(r.label, []).append(ms)
            finally:
                if box[0] is not None:
                    box[0].close()

        if self.time_calls:
            self.calls()
        cpu0 = proc_cpu(self.pid)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=work) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu_ns, _ = cpu_delta_ns(cpu0, proc_cpu(self.pid))
        if self.time_calls:
            self.last_calls = self.calls()
        if errors:
            raise Failed(errors[0])
        self.check_deadline()
        return lat, wall, cpu_ns

    def get(self, r: Req):
        box = [None]
        try:
            status, resp, body, _ = self.one(box, r)
        finally:
            if box[0] is not None:
                box[0].close()
        if status != r.expect:
            raise Failed(f"{r.method} {r.path}: {status} (expected {r.expect}) {body[:160]!r}")
        return resp, body


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def stats(values: list[float]) -> dict:
    return {"n": len(values),
            "p50_ms": round(statistics.median(values), 3) if values else None,
            "p99_ms": round(pct(values, 0.99), 3) if values else None,
            "mean_ms": round(statistics.fmean(values), 3) if values else None}


def pair_stats(lat: dict, a: str, b: str) -> dict:
    """a and b sent alternately on one connection: each one's figures and a - b (the store's
    round trip): the difference of the medians and of the p99s, and the median of the
    differences of consecutive pairs."""
    xa, xb = lat.get(a, []), lat.get(b, [])
    sa, sb = stats(xa), stats(xb)
    diffs = [p - q for p, q in zip(xa, xb)]
    return {a: sa, b: sb, "added": {
        "p50_ms": round(sa["p50_ms"] - sb["p50_ms"], 3) if xa and xb else None,
        "p99_ms": round(sa["p99_ms"] - sb["p99_ms"], 3) if xa and xb else None,
        "median_pair_ms": round(statistics.median(diffs), 3) if diffs else None}}


def with_calls(entry: dict, run: Runner, requests: int | None = None) -> dict:
    """--time-calls: the Worker-side times of the Durable Object calls of the last run, per
    binding (and calls per request of `requests`, when given)."""
    if run.time_calls and run.last_calls is not None:
        entry["do_calls"] = {}
        for binding, xs in run.last_calls.items():
            s = stats(xs)
            if requests:
                s["per_request"] = round(len(xs) / requests, 2)
            entry["do_calls"][binding] = s
    return entry


def alone_stats(lat: dict, label: str, wall: float, cpu_ns: float, concurrency: int) -> dict:
    xs = lat.get(label, [])
    out = stats(xs)
    out.update(concurrency=concurrency, rps=round(len(xs) / wall, 1) if wall else None,
               cpu_us_per_request=round(cpu_ns / 1000 / len(xs), 1) if xs else None)
    return out


def route(kind: str, tokens: list[str]) -> list[Req]:
    return [Req(kind, "GET", f"{BASE}/{kind}/{i}", bearer(t)) for i, t in enumerate(tokens)]


def interleave(*lists: list[Req]) -> list[Req]:
    out = []
    for group in zip(*lists):
        out.extend(group)
    return out


# ---- the phases ---------------------------------------------------------------------------------

def warm_up(run: Runner, tok: Tokens, n: int, op: str):
    kinds = ["plain", "budget", "deny-strict", "deny-cached", "audit-sync", "audit-async"]
    run.run(interleave(*[route(k, tok.agents(n)) for k in kinds]), 1)
    run.run([Req("whoami", "GET", WHOAMI, bearer(op)) for _ in range(max(20, n // 4))], 1)


def phase_budget(run: Runner, tok: Tokens, n: int, conc: int) -> dict:
    lat, _, _ = run.run(interleave(route("budget", tok.agents(n)), route("plain", tok.agents(n))))
    out = {"interleaved": with_calls(pair_stats(lat, "budget", "plain"), run, n)}
    for kind in ("budget", "plain"):
        lat, wall, cpu = run.run(route(kind, tok.agents(n)), conc)
        out[f"{kind}_concurrent"] = with_calls(alone_stats(lat, kind, wall, cpu, conc), run, n)
    return out


def phase_deny(run: Runner, tok: Tokens, n: int, conc: int, probes: int, op: str) -> dict:
    out = {}
    lat, _, _ = run.run(interleave(route("deny-strict", tok.agents(n)),
                                   route("plain", tok.agents(n))))
    out["strict_interleaved"] = with_calls(pair_stats(lat, "deny-strict", "plain"), run, n)
    lat, wall, cpu = run.run(route("deny-strict", tok.agents(n)), conc)
    out["strict_concurrent"] = with_calls(alone_stats(lat, "deny-strict", wall, cpu, conc),
                                         run, n)

    opb = bearer(op)
    whoami = lambda: Req("whoami", "GET", WHOAMI, opb)  # noqa: E731
    tag = secrets.token_hex(4)
    ids: list[str] = []

    def keep_id(r, _resp, body):
        if r.label == "add":
            ids.append(json.loads(body)["id"])

    def add(i, label="add"):
        body = json.dumps({"kind": "agent", "value": f"agent:bench-store-{tag}-{label}-{i}",
                           "reason": "store_load benchmark"}).encode()
        return Req(label, "POST", DENY_API, opb, body, 201)

    # Writes and lookups, one at a time, each next to the same authentication without a store.
    m = max(1, n // 2)
    lat, _, _ = run.run(interleave([add(i) for i in range(m)], [whoami() for _ in range(m)]),
                        on_ok=keep_id)
    out["add_interleaved"] = with_calls(pair_stats(lat, "add", "whoami"), run, m)
    look = [Req("lookup", "POST", f"{DENY_API}/lookup", opb,
                json.dumps({"kind": "agent",
                            "value": f"agent:bench-store-{tag}-add-{i}"}).encode())
            for i in range(m)]
    lat, _, _ = run.run(interleave(look, [whoami() for _ in range(m)]))
    out["lookup_interleaved"] = with_calls(pair_stats(lat, "lookup", "whoami"), run, m)

    # The cached route's view gone stale (older than the bound), against the next request.
    bound = deny_bound_secs()
    for changed in (False, True):
        name = "stale_after_change" if changed else "stale_unchanged"
        stale, fresh = [], []
        stale_calls: dict[str, list[float]] = {}
        for i in range(probes):
            run.check_deadline()
            if changed:  # a change in some shard: its snapshot comes back whole
                resp, body = run.get(add(i, "probe-add"))
                ids.append(json.loads(body)["id"])
            time.sleep(bound + 0.3)
            for bucket in (stale, fresh):
                lat, _, _ = run.run(route("deny-cached", tok.agents(1)))
                bucket.extend(lat["deny-cached"])
                if bucket is stale and run.last_calls is not None:
                    for k, xs in run.last_calls.items():
                        stale_calls.setdefault(k, []).extend(xs)
        out[name] = pair_stats({"stale": stale, "fresh": fresh}, "stale", "fresh")
        if run.time_calls:
            run.last_calls = stale_calls
            with_calls(out[name], run, probes)
        out[name]["bound_secs"] = bound

    # Removes, one at a time, then adds and removes over several connections.
    dels = [Req("remove", "DELETE", f"{DENY_API}/{i}", opb) for i in ids]
    lat, _, _ = run.run(interleave(dels, [whoami() for _ in dels]))
    out["remove_interleaved"] = with_calls(pair_stats(lat, "remove", "whoami"), run,
                                           len(dels))
    out["entries_during_stale_probes"] = len(ids)
    ids.clear()
    lat, wall, cpu = run.run([add(i, "add") for i in range(m, 2 * m)], conc, on_ok=keep_id)
    out["add_concurrent"] = alone_stats(lat, "add", wall, cpu, conc)
    dels = [Req("remove", "DELETE", f"{DENY_API}/{i}", opb) for i in ids]
    lat, wall, cpu = run.run(dels, conc)
    out["remove_concurrent"] = alone_stats(lat, "remove", wall, cpu, conc)
    return out


def log_size(run: Runner, tok: Tokens) -> int:
    """The log's size as the Worker tells it: the index a sync answer names is the size
    before it (the probe's own record makes it one more)."""
    resp, _ = run.get(Req("size", "GET", f"{BASE}/audit-sync/size", bearer(tok.agent())))
    value = resp.getheader(LOG_INDEX)
    if value is None or not value.isdigit():
        raise Failed(f"a sync answer without {LOG_INDEX}")
    return int(value) + 1


def async_window(run: Runner, tok: Tokens, conc: int, seconds: float, pool: list[str]) -> dict:
    """audit-async over `conc` connections for `seconds`: requests/s, and the records the log
    took meanwhile (its growth, read once the last batch is in) per second."""
    before = log_size(run, tok)
    n = 1_000_000
    reqs = [Req("audit-async", "GET", f"{BASE}/audit-async/{i}", bearer(pool[i % len(pool)]))
            for i in range(min(n, int(seconds * 5000)))]
    lat, wall, cpu = run.run(reqs, conc, max_seconds=seconds)
    sent = len(lat.get("audit-async", []))
    if run.time_calls:  # the last batches (flushed after the responses), before any probe
        time.sleep(0.5)
        for k, xs in run.calls().items():
            run.last_calls.setdefault(k, []).extend(xs)
    after = settle(run, tok, before + sent + 1)
    out = with_calls(alone_stats(lat, "audit-async", wall, cpu, conc), run, sent)
    appended = after - before - 1  # less the first size probe's own record
    out.update(records_appended=appended,
               appends_per_s=round(appended / wall, 1) if wall else None,
               cpu_us_per_record=round(cpu / 1000 / appended, 1) if appended else None)
    batches = (run.last_calls or {}).get("AUDIT_LOG") if run.time_calls else None
    if batches and appended:
        # Every AUDIT_LOG call of the window is a batch append (nothing else asked the log).
        out["batches"] = {"n": len(batches), "records_per_batch": round(appended / len(batches), 1),
                          "mean_ms": round(statistics.fmean(batches), 3),
                          "p99_ms": round(pct(batches, 0.99), 3),
                          "us_per_record": round(sum(batches) * 1000 / appended, 1)}
    return out


def settle(run: Runner, tok: Tokens, want: int, timeout: float = 10.0) -> int:
    """The log's size once it holds at least `want` records (the async batches are in)."""
    end = time.time() + timeout
    size = log_size(run, tok)
    while size < want and time.time() < end:
        time.sleep(0.2)
        size = log_size(run, tok)
    return size


def phase_audit(run: Runner, tok: Tokens, n: int, conc: int, window: float) -> dict:
    out = {}
    lat, _, _ = run.run(interleave(route("audit-sync", tok.agents(n)),
                                   route("plain", tok.agents(n))))
    out["sync_interleaved"] = with_calls(pair_stats(lat, "audit-sync", "plain"), run, n)
    indexes: list[int] = []
    lat, wall, cpu = run.run(route("audit-sync", tok.agents(n)), conc,
                             on_ok=lambda r, resp, b: indexes.append(int(resp.getheader(LOG_INDEX))))
    out["sync_concurrent"] = with_calls(alone_stats(lat, "audit-sync", wall, cpu, conc), run, n)
    if len(set(indexes)) != len(indexes):
        raise Failed("two sync answers named the same log index")
    out["sync_concurrent"]["appends_per_s"] = out["sync_concurrent"]["rps"]
    out["async_window"] = async_window(run, tok, conc, window, tok.agents(500))
    out["size_after"] = log_size(run, tok)
    return out


FILL_PY = r"""
import http.client, os, sys, threading
port, path, threads, stop = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ok, bad = [0] * threads, [0] * threads
parent = os.getppid()
def run(k):
    conn, n = None, 0
    # Until the stop file exists, or the benchmark that started this process is gone.
    while not os.path.exists(stop) and os.getppid() == parent:
        for _ in range(64):
            n += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", f"{path}/f{os.getpid()}-{k}-{n}")
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                bad[k] += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if resp.status == 401:
                ok[k] += 1
            else:
                bad[k] += 1
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(ok), sum(bad))
"""


def fill(run: Runner, tok: Tokens, target: int, procs: int, threads: int, workdir: Path,
         partial: dict) -> dict:
    """Tokenless requests to the async route (401, each a decision record sequenced in batches)
    from `procs` client processes until the log holds `target` records."""
    start_size = log_size(run, tok)
    if start_size >= target:
        return {"from": start_size, "to": start_size, "seconds": 0.0}
    stop = workdir / f"fill-stop-{target}"
    cpu0 = proc_cpu(run.pid)
    t0 = time.perf_counter()
    clients = [subprocess.Popen(
        [sys.executable, "-c", FILL_PY, str(run.port), f"{BASE}/audit-async", str(threads),
         str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        start_new_session=True) for _ in range(procs)]
    progress = []
    # What a deadline leaves: (seconds, size) points of the fill so far.
    partial["fill_so_far"] = {"from": start_size, "progress": progress}
    try:
        size, last_note = start_size, time.time()
        while size < target:
            if time.time() > run.deadline:
                raise Deadline()
            if any(c.poll() is not None for c in clients):
                raise Failed("a fill client ended early: "
                             + next(c.stderr.read().decode()[-500:] for c in clients
                                    if c.poll() is not None))
            time.sleep(1.0 if target - size > 20_000 else 0.3)
            size = log_size(run, tok)
            progress.append((round(time.perf_counter() - t0, 1), size))
            if time.time() - last_note > 30:
                rate = (size - start_size) / (time.perf_counter() - t0)
                log(f"    fill: {size} records, {rate:.0f}/s")
                last_note = time.time()
    finally:
        stop.write_text("stop")
        sent = bad = 0
        for c in clients:
            try:
                o, _ = c.communicate(timeout=30)
                parts = o.decode().split()
                if len(parts) == 2:
                    sent, bad = sent + int(parts[0]), bad + int(parts[1])
            except subprocess.TimeoutExpired:
                stop_group(c)
    secs = time.perf_counter() - t0
    end = settle(run, tok, start_size + sent)
    cpu_ns, _ = cpu_delta_ns(cpu0, proc_cpu(run.pid))
    if bad:
        raise Failed(f"the fill got {bad} unexpected answers or broken connections")
    added = end - start_size
    return {"from": start_size, "to": end, "seconds": round(secs, 1),
            "records_per_s": round(added / secs, 1), "requests": sent,
            "cpu_us_per_record": round(cpu_ns / 1000 / added, 1) if added else None,
            "progress": progress[:: max(1, len(progress) // 40)]}


def phase_growth(run: Runner, tok: Tokens, sizes: list[int], n: int, conc: int, window: float,
                 procs: int, threads: int, workdir: Path, out: dict):
    """Fill the log to each size, then measure there. Writes into `out` as it goes (a deadline
    keeps what was measured)."""
    pool = tok.agents(500)
    for target in sizes:
        log(f"  growth: filling the log to {target} records")
        step: dict = {}
        out[str(target)] = step
        step["fill"] = fill(run, tok, target, procs, threads, workdir, step)
        step.pop("fill_so_far", None)
        f = step["fill"]
        log(f"    filled {f['from']} -> {f['to']} in {f['seconds']} s "
            f"({f.get('records_per_s')} records/s)")
        lat, _, _ = run.run(interleave(route("audit-sync", tok.agents(n)),
                                       route("plain", tok.agents(n))))
        step["sync_interleaved"] = with_calls(pair_stats(lat, "audit-sync", "plain"), run, n)
        step["async_window"] = async_window(run, tok, conc, window, pool)
        step["size_after"] = log_size(run, tok)
        step["storage_bytes"] = storage_bytes(workdir)


def storage_bytes(store_dir: Path) -> int:
    """Bytes of every file of the Durable Objects' local storage (all stores: the log is
    nearly all of it once it is large)."""
    return sum(p.stat().st_size for p in store_dir.glob("persist-*/**/*") if p.is_file())


# ---- report -------------------------------------------------------------------------------------

def f3(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def report(res: dict) -> str:
    lines = [f"store_load: {res['machine']['date']}, {res['machine']['note']}",
             f"command: {res['command']}", ""]

    def call_rows(p):
        for binding, c in (p.get("do_calls") or {}).items():
            lines.append(f"  Worker-side {binding} calls: p50 {f3(c['p50_ms'])} ms, p99 "
                         f"{f3(c['p99_ms'])} ms, mean {f3(c['mean_ms'])} ms, {c['n']} calls"
                         + (f" ({c['per_request']} per request)" if "per_request" in c else ""))

    def pair_rows(title, p, a, b):
        lines.append(f"{title}")
        lines.append(f"  {'':<22} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'n':>6}")
        for k in (a, b):
            s = p[k]
            lines.append(f"  {k:<22} {f3(s['p50_ms']):>8} {f3(s['p99_ms']):>8} "
                         f"{f3(s['mean_ms']):>8} {s['n']:>6}")
        d = p["added"]
        lines.append(f"  {'added (a - b)':<22} {f3(d['p50_ms']):>8} {f3(d['p99_ms']):>8} "
                     f"{'':>8} {'':>6}  median of pair differences {f3(d['median_pair_ms'])} ms")
        call_rows(p)

    def alone_rows(title, s, extra=""):
        lines.append(f"{title}: p50 {f3(s['p50_ms'])} ms, p99 {f3(s['p99_ms'])} ms, "
                     f"{s['rps']} req/s over {s['concurrency']} connections, "
                     f"{s['cpu_us_per_request']} us CPU/request (workerd){extra}")
        call_rows(s)

    ph = res.get("phases", {})
    if "budget" in ph:
        b = ph["budget"]
        lines.append("== issue 15: session budget (SessionBudget Durable Object) ==")
        pair_rows("budget route vs the same request without the budget (interleaved, 1 "
                  "connection)", b["interleaved"], "budget", "plain")
        for k in ("budget", "plain"):
            if f"{k}_concurrent" in b:
                alone_rows(f"{k} alone", b[f"{k}_concurrent"])
        lines.append("")
    if "deny" in ph:
        d = ph["deny"]
        lines.append("== issue 16: deny store (deny-shard-N objects) ==")
        pair_rows("strict lookup route vs plain (interleaved)", d["strict_interleaved"],
                  "deny-strict", "plain")
        if "strict_concurrent" in d:
            alone_rows("deny-strict alone", d["strict_concurrent"])
        for k, t in (("add_interleaved", "operator add (write) vs whoami (same authentication)"),
                     ("lookup_interleaved", "operator lookup vs whoami"),
                     ("remove_interleaved", "operator remove (write) vs whoami")):
            if k in d:
                pair_rows(t, d[k], *[x for x in d[k] if x != "added"][:2])
        for k, t in (("stale_unchanged", "cached route, view stale (shards unchanged) vs the "
                                         "next request (fresh view)"),
                     ("stale_after_change", "cached route, view stale after an operator add vs "
                                            "the next request")):
            if k in d:
                pair_rows(t + f" (bound {d[k]['bound_secs']} s)", d[k], "stale", "fresh")
        for k in ("add_concurrent", "remove_concurrent"):
            if k in d:
                alone_rows(f"operator {k.split('_')[0]} alone", d[k])
        lines.append("")
    if "audit" in ph:
        a = ph["audit"]
        lines.append("== issue 17: decision log (AuditLog sequencer) ==")
        pair_rows("sync route vs plain (interleaved)", a["sync_interleaved"], "audit-sync",
                  "plain")
        if "sync_concurrent" in a:
            alone_rows("audit-sync alone (one append per request)", a["sync_concurrent"])
        if "async_window" in a:
            w = a["async_window"]
            alone_rows("audit-async alone", w, f"; the log took {w['records_appended']} records: "
                       f"{w['appends_per_s']} appends/s, {w['cpu_us_per_record']} us CPU/record")
            if "batches" in w:
                bt = w["batches"]
                lines.append(f"  batch appends: {bt['n']}, {bt['records_per_batch']} records each, "
                             f"mean {bt['mean_ms']} ms (p99 {bt['p99_ms']}), "
                             f"{bt['us_per_record']} us per record (Worker-side)")
        lines.append("")
    if "growth" in ph:
        lines.append("== issue 17: the log as it grows ==")
        lines.append(f"  {'size':>9} | {'fill s':>7} | {'fill rec/s':>10} | {'fill us/rec':>11} | "
                     f"{'sync +p50':>9} | {'sync +p99':>9} | {'sync p50':>8} | {'sync p99':>8} | "
                     f"{'async app/s':>11} | {'async us/rec':>12} | {'batch rec':>9} | {'batch ms':>8} | "
                     f"{'seq us/rec':>10} | {'storage MB':>10}")
        for size, st in ph["growth"].items():
            if "fill" not in st:
                pts = st.get("fill_so_far", {}).get("progress") or [(0, 0)]
                lines.append(f"  {size:>9}: not reached; the fill got to {pts[-1][1]} records in "
                             f"{pts[-1][0]} s")
                continue
            f = st["fill"]
            si = st.get("sync_interleaved", {})
            w = st.get("async_window", {})
            bt = w.get("batches", {})
            lines.append(
                f"  {f['to']:>9} | {f['seconds']:>7} | "
                f"{dash(f.get('records_per_s')):>10} | {dash(f.get('cpu_us_per_record')):>11} | "
                f"{f3(si.get('added', {}).get('p50_ms')):>9} | "
                f"{f3(si.get('added', {}).get('p99_ms')):>9} | "
                f"{f3(si.get('audit-sync', {}).get('p50_ms')):>8} | "
                f"{f3(si.get('audit-sync', {}).get('p99_ms')):>8} | "
                f"{dash(w.get('appends_per_s')):>11} | {dash(w.get('cpu_us_per_record')):>12} | "
                f"{dash(bt.get('records_per_batch')):>9} | {dash(bt.get('mean_ms')):>8} | "
                f"{dash(bt.get('us_per_record')):>10} | "
                f"{st.get('storage_bytes', 0) / 1e6:>10.1f}")
        fills = [st["fill"] for st in ph["growth"].values() if "fill" in st]
        if fills:
            lines.append(f"  size: the log's size when the step's measurements began (they add "
                         f"records of their own); the fill from {fills[0]['from']} to "
                         f"{fills[-1]['to']} records took {sum(f['seconds'] for f in fills):.0f} s")
    if res.get("stopped_at_deadline"):
        lines.append(f"(stopped at the deadline of {res['parameters']['max_minutes']} min: "
                     "what is above is what was measured)")
    return "\n".join(lines)


def dash(v) -> str:
    return "–" if v is None else str(v)


def machine_note(args) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "runtime": "workerd serve of the bundled Worker (wrangler deploy --dry-run), no dev "
                   "proxy; the Worker and every Durable Object in one local process; SQLite on "
                   + ("tmpfs" if args.store == "tmpfs" else "disk"),
        "quiet_machine": args.quiet_machine,
        "note": ("quiet machine: nothing else ran during the measurement" if args.quiet_machine
                 else "SHARED machine: other builds and tests ran at the same time; the figures "
                      "show the tool works and their order of magnitude, not final numbers"),
    }


# ---- main ---------------------------------------------------------------------------------------

def _terminate(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def parse_sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1_000_000 if part.endswith("m") else 1000 if part.endswith("k") else 1
        out.append(int(float(part.rstrip("mk")) * mult))
    return out


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default="budget,deny,growth,audit",
                    help="which of budget, deny, growth, audit, run in this order (default all: "
                         "growth before audit, so that its first size is not already passed; the "
                         "audit phase then runs on the grown log)")
    ap.add_argument("--requests", type=int, default=2000,
                    help="requests per route per latency measurement (default 2000)")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="connections of the concurrent measurements (default 8)")
    ap.add_argument("--window", type=float, default=10.0,
                    help="seconds of each async-route throughput window (default 10)")
    ap.add_argument("--stale-probes", type=int, default=30,
                    help="stale-view requests of each kind (each waits the deny bound; default 30)")
    ap.add_argument("--sizes", default="10k,100k,1m",
                    help="log sizes the growth phase fills to and measures at (default 10k,100k,1m)")
    ap.add_argument("--growth-requests", type=int, default=500,
                    help="sync/plain requests each at every growth size (default 500)")
    ap.add_argument("--fill-procs", type=int, default=3, help="fill client processes (default 3)")
    ap.add_argument("--fill-threads", type=int, default=8,
                    help="connections per fill client process (default 8)")
    ap.add_argument("--warmup", type=int, default=300, help="warm-up requests per route")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 300 requests, 3 s windows, 5 stale probes, sizes 10k,20k")
    ap.add_argument("--max-minutes", type=float, default=45.0,
                    help="global deadline: stop and report what was measured (default 45)")
    ap.add_argument("--port", type=int, default=0,
                    help="origin port; the issuer listens on port+1 (compiled into the build; "
                         "default: free ports)")
    ap.add_argument("--build-dir", type=Path,
                    help="keep the build here and reuse it when it was made for the same --port")
    ap.add_argument("--store", choices=["tmpfs", "disk"], default="tmpfs",
                    help="where workerd keeps the Durable Objects' SQLite files (default tmpfs: "
                         "local workerd commits on its event loop, so on a disk every fsync "
                         "stalls the process; see benches/nonce_load.py)")
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "store-load",
                    help="write OUT.json and OUT.txt (default benches/results/store-load)")
    ap.add_argument("--time-calls", action="store_true",
                    help="also time every Durable Object call on the Worker's side (the bundle "
                         "served behind a thin timing module, TIMING_ENTRY_JS): per binding, "
                         "p50/p99 and calls per request, and the log's batch appends; the "
                         "module adds one JavaScript call per store call)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--quiet-machine", action="store_true",
                    help="record that nothing else ran during the measurement")
    ap.add_argument("--report", type=Path,
                    help="measure nothing: print the report of a saved JSON file (and write "
                         "its .txt beside it)")
    args = ap.parse_args()
    if args.report:
        text = report(json.loads(args.report.read_text()))
        print(text)
        args.report.with_suffix(".txt").write_text(text + "\n")
        return
    if args.quick:
        quick = dict(requests=300, window=3.0, stale_probes=5, sizes="10k,20k",
                     growth_requests=200, warmup=100)
        for k, v in quick.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)
    if args.build_dir and not args.port:
        ap.error("--build-dir needs --port (the origin's and issuer's URLs are compiled in)")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - {"budget", "deny", "audit", "growth"}
    if unknown:
        ap.error(f"unknown phases {sorted(unknown)}")
    sizes = parse_sizes(args.sizes)
    deadline = time.time() + args.max_minutes * 60
    command = "source scripts/env.sh && .venv/bin/python benches/store_load.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    res = {"benchmark": "store_load", "command": command, "machine": machine_note(args),
           "parameters": {k: (str(v) if isinstance(v, Path) else v)
                          for k, v in vars(args).items()},
           "phases": {}, "phase_s": {}}
    run_started = time.perf_counter()

    workdir = Path(tempfile.mkdtemp(prefix="attestgate-store-bench-"))
    store_dir = workdir
    if args.store == "tmpfs":
        store_dir = Path(tempfile.mkdtemp(prefix="attestgate-store-bench-", dir="/dev/shm"))
    origin = Origin(args.port)
    servers = LocalServers(port=args.port + 1 if args.port else 0)
    servers.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    servers.start()
    worker = None
    try:
        servers.issuer.add_key("ES256", KIDS["ES256"])
        stamp_text = f"{origin.base} {servers.issuer.issuer}"
        if args.build_dir:
            build_dir = args.build_dir.resolve()
            stamp = build_dir / ".store-bench-stamp"
            if not (stamp.exists() and stamp.read_text() == stamp_text):
                # Only a folder of this tool's own (its stamp) or an empty/new one is rebuilt:
                # another tool's build there (benches/ab.py's) is never deleted.
                if build_dir.exists() and any(build_dir.iterdir()) and not stamp.exists():
                    raise SystemExit(f"{build_dir} holds a build that is not store_load's "
                                     "(no .store-bench-stamp): pass a new or empty folder")
                log("building attestgate (release) with benches/policies ...")
                shutil.rmtree(build_dir, ignore_errors=True)
                build_attestgate(fill_policies(workdir / "policies", origin.base, servers),
                                 build_dir)
                stamp.write_text(stamp_text)
            else:
                log(f"reusing the build in {build_dir}")
        else:
            log("building attestgate (release) with benches/policies ...")
            build_dir = workdir / "build"
            secs = build_attestgate(fill_policies(workdir / "policies", origin.base, servers),
                                    build_dir)
            res["phase_s"]["build"] = round(secs, 1)
        attestgate_vars = {"ATTESTGATE_LOG": "decisions",
                           "ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                           "ATTESTGATE_SIGNING_KEY": signing_key_json(),
                           "BENCH_INJECT_KEY": INJECT_KEY}
        worker = StoreWorker("attestgate", attestgate_config(store_dir, build_dir, False),
                             store_dir, attestgate_vars,
                             entry_js=TIMING_ENTRY_JS if args.time_calls else None)
        worker.start()
        log(f"workerd {worker.user_pid} serving on 127.0.0.1:{worker.port}")
        run = Runner(worker.port, worker.user_pid, deadline, args.time_calls)
        tok = Tokens(servers)
        op = tok.operator()
        servers.recorder.add = lambda entry: None
        t = time.perf_counter()
        warm_up(run, tok, args.warmup, op)
        res["phase_s"]["warm-up"] = round(time.perf_counter() - t, 1)
        try:
            for name in phases:
                t = time.perf_counter()
                log(f"phase {name} ...")
                if name == "budget":
                    res["phases"]["budget"] = phase_budget(run, tok, args.requests,
                                                           args.concurrency)
                elif name == "deny":
                    res["phases"]["deny"] = phase_deny(run, tok, args.requests, args.concurrency,
                                                       args.stale_probes, op)
                elif name == "audit":
                    res["phases"]["audit"] = phase_audit(run, tok, args.requests,
                                                         args.concurrency, args.window)
                elif name == "growth":
                    res["phases"]["growth"] = {}
                    phase_growth(run, tok, sizes, args.growth_requests, args.concurrency,
                                 args.window, args.fill_procs, args.fill_threads, store_dir,
                                 res["phases"]["growth"])
                res["phase_s"][name] = round(time.perf_counter() - t, 1)
        except Deadline:
            log(f"deadline of {args.max_minutes} min reached: reporting what was measured")
            res["stopped_at_deadline"] = True
    except Failed as e:
        res["failed"] = str(e)
        log(f"store_load: {e}")
        if worker:
            log(worker.tail())
    finally:
        if worker:
            worker.stop()
        origin.stop()
        servers.stop()
        if args.keep:
            log(f"scratch folders kept: {workdir} {store_dir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(store_dir, ignore_errors=True)
    res["duration_s"] = round(time.perf_counter() - run_started, 1)
    text = report(res)
    print(text)
    out = args.out if args.out.is_absolute() else (Path.cwd() / args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.txt')}")
    if "failed" in res:
        sys.exit(1)


if __name__ == "__main__":
    main()
