#!/usr/bin/env python3
"""attestgate vs a `jose` Worker and measuring floors, all served by workerd, on loopback.

    .venv/bin/python benches/workerd.py                # build, CPU workloads, load, cold start
    .venv/bin/python benches/workerd.py --quick        # a short smoke run (numbers are rough)
    .venv/bin/python benches/workerd.py --help

What it does (docs/performance.md explains the method and how to read the figures):

1. Starts the local origin + JWKS issuer of the end-to-end tests (tests/e2e/servers.py), and
   mints with joserfc, before anything is timed, every token the run will send (scope
   orders:read, act.sub, typ at+jwt; ES256 and EdDSA keys of the issuer's JWKS).
2. Builds attestgate (release, scripts/build.sh) with the bench policy folder benches/policies/
   (its {{ORIGIN}}/{{ISSUER}}/{{JWKS_URI}} filled in), unless --build-dir points at a build made
   for the same --port.
3. Starts each Worker in its own workerd (`--runtime workerd`, the default: bundled by
   `wrangler deploy --dry-run`, served by the workerd binary from a generated config) or its
   own `wrangler dev` (`--runtime wrangler`), each in its own process group:
     attestgate    the build above (route orders-read; public route /healthz);
     jose          benches/jose-worker (the same checks with the `jose` library; /healthz public);
     floor         a pass-through Worker that forwards to the same origin and verifies nothing;
     floor-log     the floor plus one console.log line shaped like attestgate's decision line;
     floor-verify  the floor plus exactly one crypto.subtle.verify of the token's signature;
     log-*         the floor with another way of writing that line (LOG_VARIANTS).
   Checks every Worker's answers before anything is timed (sanity): both verifying Workers
   accept both algorithms and forward the verified claims, refuse every kind of the refusal mix
   with 401 (attestgate for the expected reason), and the Workers meant to log do.
4. CPU per request, per workload (WORKLOADS), side by side in one run:
     unique   a distinct token for every request (ES256, EdDSA);
     session  each token used 20 times, round-robin over 50 concurrent sessions (ES256, EdDSA);
     public   GET /healthz: attestgate's and jose's public route, the floors;
     refusal  bad signature, expired, wrong audience in equal parts, ES256 and EdDSA: 401 from
              attestgate and jose (the floors forward the same requests);
     log      the log-line alternatives against the floor, each answering without a subrequest;
     inject   issue 14: attestgate alone, a verified request whose upstream gets a static
              injected credential (benches/policies/inject.toml), against the same requests
              on the route without an upstream ("inject, none"), in the same rounds.
   For each round and workload, N requests to each of its Workers, interleaved one by one
   (A, B, floor, A, B, floor, ...; the order rotates per round), and the CPU time of each
   Worker's workerd process before and after. Any answer other than the expected one stops the
   run. Reports median and spread over the rounds, the ratios issue 19's targets name, and the
   µs per log line of each alternative.
5. Load: wrk (if installed; `apt-get install wrk`) against the origin directly and through each
   Worker, at 1 and at 8 connections: requests per second, p50 and p99 latency (one token for
   every request of a run).
6. Cold start (workerd runtime): fresh workerd processes, the first request of each. A Worker
   that only loads attestgate's (or jose's) bundle and answers without calling it measures the
   instantiation (module evaluation: for attestgate the WebAssembly instance) against an empty
   Worker; attestgate and jose then serve a verified request first (the target's figure), or a
   public request first and the verified one second (policy compile and first use of the
   request path, then key fetch and import and the verification path).

Everything listens on 127.0.0.1 only; every loop is bounded; the run stops by itself (a global
deadline, --max-minutes) and always stops what it started.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from procs import free_port, stop_group, wrangler_env  # noqa: E402
from servers import LocalServers  # noqa: E402

WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
WORKERD = ROOT / "node_modules" / ".bin" / "workerd"
ORDER_PATH = "/v1/orders/42"
# Issue 14: the same route with an upstream that injects a static credential (benches/policies/inject.toml).
INJECT_PATH = "/v1/inject/42"
INJECT_KEY = "bench-" + secrets.token_urlsafe(24)
DENY_PATH = "/v1/orders-deny/42"  # issue 16: the same route with deny_check = "cached"
# Issue 17: the same route with audit = "async" (benches/policies/routes.toml).
AUDIT_PATH = "/v1/audited/42"
PUBLIC_PATH = "/healthz"
# Issue 14: the same route as ORDER_PATH with `receipt = true` (benches/policies/receipt.toml).
RECEIPT_PATH = "/v1/receipt/orders/42"
# The floors answer these paths themselves, without the origin subrequest (the log-line group):
# the first with their log line (if they have one), the second without it.
ANSWER_PATH = "/__bench/answer"
QUIET_PATH = "/__bench/quiet"
AUDIENCE = "https://api.example.com"
OTHER_AUDIENCE = "https://other.example.com"
KIDS = {"ES256": "bench-es256", "EdDSA": "bench-eddsa"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
SESSIONS = 50  # the session workload: concurrent sessions, round-robin
USES = 20      # ... and requests per token
# Issue 19's targets: (what, ratio, at most).
TARGETS = {
    "session": ("session workload, attestgate / jose, log line on", 0.85),
    "unique": ("unique tokens, attestgate / jose", 1.05),
    "public": ("public route, attestgate / pass-through floor", 1.05),
    "cold": ("cold start, first verified request, attestgate / jose", 1.0),
    # Issue 14: the receipt adds at most 15% CPU to a verified request.
    "receipt": ("receipt route / the same verified request without a receipt, attestgate", 1.15),
}

FLOOR_JS = """\
// Benchmark floor: forwards every request to the origin and verifies nothing.
/*MODULE*/
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname !== "/__bench/quiet") {
      /*LOG*/
    }
    if (url.pathname.startsWith("/__bench/")) return new Response("ok");
    return fetch(env.ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
    });
  },
};
"""

FLOOR_VERIFY_JS = """\
// Benchmark lower bound for any verifier built on WebCrypto: the floor plus exactly one
// crypto.subtle.verify of the token's signature with a key imported once per isolate. No claim,
// header or policy checks at all: not a gateway, a measuring stick.
let keys;
const b64u = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
async function loadKeys(env) {
  const jwks = await (await fetch(env.JWKS_URI)).json();
  const out = new Map();
  for (const jwk of jwks.keys) {
    const alg = jwk.crv === "P-256" ? { name: "ECDSA", namedCurve: "P-256" } : { name: "Ed25519" };
    out.set(jwk.kid, [await crypto.subtle.importKey("jwk", jwk, alg, false, ["verify"]),
                      jwk.crv === "P-256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "Ed25519" }]);
  }
  return out;
}
export default {
  async fetch(request, env) {
    const token = (request.headers.get("authorization") || "").slice(7);
    const dot = token.lastIndexOf(".");
    if (dot < 0) return new Response("no token", { status: 401 });
    const header = JSON.parse(new TextDecoder().decode(b64u(token.slice(0, token.indexOf(".")))));
    keys ??= await loadKeys(env);
    const [key, alg] = keys.get(header.kid) || [];
    if (!key) return new Response("unknown key", { status: 401 });
    const ok = await crypto.subtle.verify(alg, key, b64u(token.slice(dot + 1)),
                                          new TextEncoder().encode(token.slice(0, dot)));
    if (!ok) return new Response("bad signature", { status: 401 });
    const url = new URL(request.url);
    return fetch(env.ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
    });
  },
};
"""

# The fields of a decision line like attestgate's (same fields, about the same length), as a
# JavaScript object literal built per request.
LOG_FIELDS = (
    "{attestgate: 'decision', request_id: crypto.randomUUID(), "
    "method: request.method, path: url.pathname, route: 'orders-read', verdict: 'allow', "
    "status: 200, provider: undefined, issuer: [env.ORIGIN + '/demo-issuer'], "
    "subject: 'user:alice', agent: ['agent:planner'], jti: ['q3Rk1xPzW8mN0aBc'], "
    "latency_ms: 1}"
)
# floor-log: the floor plus one console.log line shaped like attestgate's decision log: what
# writing one log line costs in this runtime. (Until 2026-11-23 FLOOR_JS had no /*LOG*/
# placeholder, so floor-log was the floor itself and the log line looked free; it is not, see
# docs/performance.md.)
LOG_LINE = f"console.log(JSON.stringify({LOG_FIELDS}));"
# A decision line as attestgate writes it (allow verdict of the bench route), ~280 bytes.
READY_LINE = json.dumps({
    "attestgate": "decision", "request_id": "3q2-7wAAAAAAAAAA", "method": "GET",
    "path": ORDER_PATH, "route": "orders-read", "verdict": "allow",
    "issuer": ["http://127.0.0.1:47123/demo-issuer"], "subject": "user:alice",
    "agent": ["agent:planner"], "jti": ["q3Rk1xPzW8mN0aBc"], "latency_ms": 1.0,
}, separators=(",", ":"))
SAMPLE_EVERY = 10
DECISION_MARK = '"attestgate":"decision"'
# The ways the runtime offers to write that line, each a floor variant: name -> (what it does,
# module-level JavaScript, per-request JavaScript, lines written per request, a predicate on an
# output line that says it is one of this variant's lines). floor-log is the first of them.
LOG_VARIANTS = {
    "floor-log": (
        "JS builds the object from the fields, console.log(JSON.stringify(obj))",
        "", LOG_LINE, 1.0, lambda line: DECISION_MARK in line),
    "log-object": (
        "console.log(obj): the same object, formatted by the runtime",
        "", f"console.log({LOG_FIELDS});", 1.0,
        lambda line: "attestgate" in line and "decision" in line),
    "log-string": (
        "console.log(line) of a ready string (the line built elsewhere, e.g. in Rust): the call "
        "alone",
        f"const LINE = {json.dumps(READY_LINE)};", "console.log(LINE);", 1.0,
        lambda line: DECISION_MARK in line),
    "log-utf8": (
        "what a line built in Rust costs on the JS side: its UTF-8 bytes in a buffer (as in the "
        "wasm memory) decoded with TextDecoder, as wasm-bindgen passes a &str, then "
        "console.log(line)",
        f"const LINE = {json.dumps(READY_LINE)};\n"
        "const DEC = new TextDecoder(\"utf-8\", { ignoreBOM: true, fatal: true });\n"
        "const MEM = new Uint8Array(65536);\n"
        "const LEN = new TextEncoder().encodeInto(LINE, MEM).written;",
        "console.log(DEC.decode(MEM.subarray(0, LEN)));", 1.0,
        lambda line: DECISION_MARK in line),
    "log-sampled": (
        f"the floor-log line for 1 request in {SAMPLE_EVERY} (allow lines sampled; a counter)",
        "let seen = 0;", f"if (++seen % {SAMPLE_EVERY} === 0) {LOG_LINE}", 1.0 / SAMPLE_EVERY,
        lambda line: DECISION_MARK in line),
    "log-short": (
        "console.log('x'): the fixed cost of one call",
        "", "console.log('x');", 1.0, lambda line: line.strip() == "x"),
}
LOG_NAMES = list(LOG_VARIANTS)  # floor-log first

# Cold start: a Worker that evaluates another Worker's bundle (for attestgate: the wasm-bindgen
# shim, which instantiates the WebAssembly module at module evaluation) and answers without
# calling into it; and an empty Worker, the runtime's own first request.
COLD_LOAD_JS = """\
// Benchmark only: loads the bundle (module evaluation) and answers without calling it.
import * as bundle from "./index.js";
export default { fetch() { return new Response(typeof bundle.default); } };
"""
COLD_EMPTY_JS = """\
// Benchmark only: the runtime's own first request.
export default { fetch() { return new Response("ok"); } };
"""


class Deadline(Exception):
    pass


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# CPU accounting of a process (all its threads)


def stop_all(workers) -> None:
    """Stop every Worker of `workers` (a dict's values or a list), best effort: on the way out of
    a bench, one that fails to stop does not keep the others running."""
    for w in (workers.values() if isinstance(workers, dict) else workers):
        try:
            w.stop()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def proc_cpu(pid: int) -> tuple[int, int | None, dict]:
    """(utime+stime in clock ticks, sum of the threads' schedstat run time in ns, {thread id:
    ns}).

    /proc/<pid>/stat counts every thread the process ever had, at 1/CLK_TCK resolution.
    /proc/<pid>/task/*/schedstat gives nanoseconds but only for live threads, so it is used
    only when no thread ended between the two samples (threads that started in between count
    whole: all of their time is inside the interval).
    """
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])
    threads = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads[tid] = int(f.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return ticks, None, {}
    return ticks, sum(threads.values()), threads


def cpu_delta_ns(before, after) -> tuple[float, str]:
    if before[1] is not None and after[1] is not None and before[2].keys() <= after[2].keys():
        return float(sum(ns - before[2].get(tid, 0) for tid, ns in after[2].items())), "schedstat"
    return (after[0] - before[0]) * 1e9 / CLK_TCK, "stat"


# ---------------------------------------------------------------------------------------------
# A Worker in `wrangler dev`


class Worker:
    """A Worker in its own `wrangler dev` (`--runtime wrangler`)."""

    def __init__(self, name: str, config: Path, workdir: Path, vars_: dict[str, str] | None = None):
        self.name = name
        self.config = config
        self.workdir = workdir
        self.vars = vars_ or {}
        self.proc: subprocess.Popen | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.port = 0
        self.ready_s = 0.0
        self.user_pid = 0
        self.proxy_pid = 0
        self.log_path = workdir / f"wrangler-{name}.log"

    def start(self, timeout: float = 90.0, probe: str = "http") -> "Worker":
        self.port = free_port()
        persist = self.workdir / f"persist-{self.name}"
        persist.mkdir(exist_ok=True)
        env = wrangler_env(ROOT, self.workdir / "wrangler-logs")
        args = [
            str(WRANGLER), "dev",
            "--config", str(self.config),
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--inspector-port", str(free_port()),
            "--persist-to", str(persist),
            "--show-interactive-dev-session=false",
            # "log": the Workers' console output reaches the log file, which sanity() reads
            # (with "warn" the decision lines were not there and the check failed).
            "--log-level", "log",
        ]
        for k, v in self.vars.items():
            args += ["--var", f"{k}:{v}"]
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            cwd=self.config.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(started, timeout, "wrangler dev")
        self.find_workerd()
        return self

    def wait_ready(self, started: float, timeout: float, what: str, probe: str = "http"):
        """Until the Worker answers (probe "http": any status of a request to a path no route
        matches, no origin involved) or its socket accepts a connection (probe "tcp": nothing
        reaches the Worker, its isolate stays unused); records the time from `started`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: {what} exited:\n{self.tail()}")
            try:
                if probe == "tcp":
                    socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                else:
                    self.get("/__bench_readiness_probe", {}, timeout=5)
                self.ready_s = time.perf_counter() - started
                return
            except (OSError, http.client.HTTPException):
                self.close()
                time.sleep(0.002 if probe == "tcp" else 0.05)
        raise RuntimeError(f"{self.name}: {what} did not become ready:\n{self.tail()}")

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def find_workerd(self):
        """The workerd processes in this wrangler's process group: the one listening on our
        port runs wrangler's proxy Worker; the other one runs the user Worker."""
        pgid = self.proc.pid
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or "workerd" not in stat.split(")")[0]:
                continue
            found.append((int(entry), cmd))
        proxy = [p for p, c in found if f"entry=127.0.0.1:{self.port} " in c + " "]
        user = [p for p, c in found if p not in proxy]
        if len(user) != 1:
            raise RuntimeError(f"{self.name}: expected one user workerd, found {found}")
        self.user_pid = user[0]
        self.proxy_pid = proxy[0] if proxy else 0

    def get(self, path: str, headers: dict, timeout: float = 30, method: str = "GET",
            body: bytes | None = None) -> tuple[int, bytes]:
        """One GET on the kept-alive connection. If the server closed a connection that had
        served earlier requests before answering (a kept-alive connection it dropped), the
        request is sent once more on a new one, and counted in `stale_retries`."""
        reused = self.conn is not None
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
            if resp.getheader("connection", "").lower() == "close":
                self.close()
            return resp.status, body
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused or (self.proc is not None and self.proc.poll() is not None):
                raise
            self.stale_retries = getattr(self, "stale_retries", 0) + 1
            if self.stale_retries == 1:  # workerd closes connections idle for some seconds
                log(f"{self.name}: kept-alive connection closed without an answer; sending "
                    "again (counted, not logged again)")
            return self.get(path, headers, timeout, method, body)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop(self):
        self.close()
        if self.proc is None:
            return
        stop_group(self.proc)
        self.proc = None
        self._log.close()


class DirectWorker(Worker):
    """The same Worker, bundled once by `wrangler deploy --dry-run` (exactly what would be
    uploaded) and served by the `workerd` binary itself from a generated config: no wrangler
    proxy Worker in front, no inspector attached, one process. Closer to production than
    `wrangler dev`, whose dev machinery (the proxy hop, the inspector session that carries
    console output) adds cost to every request."""

    def __init__(self, name: str, config: Path, workdir: Path, vars_: dict[str, str] | None = None,
                 entry_js: str | None = None, bundle_of: str | None = None):
        """`entry_js`: a module served as the main module instead of the bundle's index.js
        (which stays importable as "./index.js"; no Durable Object then). `bundle_of`: reuse
        the bundle of the Worker of that name (same config) in the same folder."""
        super().__init__(name, config, workdir, vars_)
        self.bundle: Path | None = None
        self.entry_js = entry_js
        self.bundle_of = bundle_of or name
        self.ready_cpu = None
        self.log_path = self.workdir / f"workerd-{self.name}.log"

    def _bundle(self) -> Path:
        out = self.workdir / f"bundle-{self.bundle_of}"
        if out.exists():
            return out
        env = wrangler_env(ROOT, self.workdir / "wrangler-logs")
        r = subprocess.run(
            [str(WRANGLER), "deploy", "--dry-run", "--outdir", str(out), "--config",
             str(self.config)],
            cwd=self.config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: bundling failed:\n{r.stdout.decode()[-3000:]}")
        return out

    def _modules(self, bundle: Path) -> list[str]:
        """The config's modules: the bundle's files (and the bench entry in front, if any)."""
        modules: list[str] = []
        # embed paths are relative to the config file (an absolute path is looked up in the
        # import roots instead).
        for f in sorted(p.relative_to(self.workdir) for p in bundle.iterdir()):
            if f.name == "index.js" and not self.entry_js:
                modules.insert(0, f'(name = "index.js", esModule = embed "{f}")')
            elif f.suffix == ".js":
                modules.append(f'(name = "{f.name}", esModule = embed "{f}")')
            elif f.suffix == ".wasm":
                modules.append(f'(name = "{f.name}", wasm = embed "{f}")')
        if self.entry_js:
            entry = self.workdir / f"entry-{self.name}.js"
            entry.write_text(self.entry_js)
            modules.insert(0, f'(name = "bench-entry.js", esModule = embed "{entry.name}")')
        return modules

    def _config(self, bundle: Path) -> Path:
        modules = self._modules(bundle)
        bindings = [f'(name = "{k}", text = {json.dumps(v)})' for k, v in self.vars.items()]
        extra = ""
        services = ""
        if "durable_objects" in self.config.read_text() and not self.entry_js:
            persist = self.workdir / f"persist-{self.name}"
            persist.mkdir(exist_ok=True)
            bindings.append('(name = "NONCE_STORE", durableObjectNamespace = "NonceStore")')
            # Issue 16: the deny store's shards are objects of the same class.
            bindings.append('(name = "DENY_STORE", durableObjectNamespace = "NonceStore")')
            # Issue 17: the decision log's sequencer (the "audit" workload).
            bindings.append('(name = "AUDIT_LOG", durableObjectNamespace = "AuditLog")')
            extra = (',\n  durableObjectNamespaces = [(className = "NonceStore", '
                     'uniqueKey = "attestgate-NonceStore", enableSql = true), '
                     '(className = "AuditLog", uniqueKey = "attestgate-AuditLog", '
                     'enableSql = true)],\n'
                     '  durableObjectStorage = (localDisk = "disk")')
            services = f',\n    (name = "disk", disk = (path = "{persist}", writable = true))'
        # V8_FLAGS (space-separated, measuring only: production cannot set them), e.g.
        # "--no-wasm-lazy-compilation": what the runtime's compilation strategy costs.
        flags = os.environ.get("V8_FLAGS", "").split()
        v8 = (",\n  v8Flags = [" + ", ".join(json.dumps(f) for f in flags) + "]") if flags else ""
        text = f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "private", "local"])){services}
  ],
  sockets = [(name = "http", address = "127.0.0.1:{self.port}", http = (), service = "main")]{v8}
);
const worker :Workerd.Worker = (
  modules = [{", ".join(modules)}],
  compatibilityDate = "2026-11-17",
  bindings = [{", ".join(bindings)}],
  globalOutbound = "internet"{extra}
);
"""
        path = self.workdir / f"workerd-{self.name}.capnp"
        path.write_text(text)
        return path

    def start(self, timeout: float = 90.0, probe: str = "http") -> "Worker":
        """Spawns workerd; with probe "tcp" the Worker's isolate has served nothing yet when
        this returns, and `ready_cpu` is the process's CPU up to then (proc_cpu)."""
        self.bundle = self._bundle()
        self.port = free_port()
        config = self._config(self.bundle)
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(WORKERD), "serve", str(config)],
            cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.user_pid = self.proc.pid
        self.proxy_pid = 0
        self.wait_ready(started, timeout, "workerd", probe)
        self.ready_cpu = proc_cpu(self.user_pid)
        return self


# ---------------------------------------------------------------------------------------------
# Set-up


def fill_policies(servers: LocalServers, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for template in sorted((ROOT / "benches" / "policies").glob("*.toml")):
        text = template.read_text()
        text = text.replace("{{ORIGIN}}", servers.base)
        text = text.replace("{{ISSUER}}", servers.issuer.issuer)
        text = text.replace("{{JWKS_URI}}", servers.jwks_uri)
        (dest / template.name).write_text(text)
    return dest


def build_attestgate(policy_dir: Path, dest: Path) -> float:
    env = dict(os.environ, ATTESTGATE_POLICY_DIR=str(policy_dir))
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build.sh")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        sys.exit("worker build failed:\n" + result.stdout.decode(errors="replace")[-6000:])
    shutil.copytree(ROOT / "build", dest)
    return time.perf_counter() - started


def attestgate_config(workdir: Path, build_dir: Path, observability: bool) -> Path:
    d = workdir / "attestgate"
    d.mkdir(exist_ok=True)
    config = (ROOT / "wrangler.toml").read_text()
    config = config.replace('main = "build/index.js"', f'main = "{build_dir}/index.js"')
    # No [build] step: the build above (or --build-dir) is what runs.
    config = re.sub(r"(?ms)^\[build\]\n.*?(?=^\[|\Z)", "", config)
    if not observability:
        # The jose Worker and the floors have no [observability]: same runtime set-up for all.
        config = re.sub(r"(?ms)^\[observability\]\n.*?(?=^\[|\Z)", "", config)
    (d / "wrangler.toml").write_text(config)
    nonce_key = base64.b64encode(secrets.token_bytes(32)).decode()
    (d / ".dev.vars").write_text(
        f'ATTESTGATE_NONCE_KEY="{nonce_key}"\n'
        f'BENCH_INJECT_KEY="{INJECT_KEY}"\n'
        f"ATTESTGATE_SIGNING_KEY='{signing_key_json()}'\n"
    )
    return d / "wrangler.toml"


_SIGNING_KEY: list[str] = []


def signing_key_json() -> str:
    """Issue 14: the gateway's signing key for the receipt workload (a private ES256 JWK,
    generated by joserfc once per run)."""
    if not _SIGNING_KEY:
        from joserfc.jwk import ECKey
        key = ECKey.generate_key("P-256", parameters={"kid": "bench-gw"}, private=True)
        _SIGNING_KEY.append(json.dumps(key.as_dict(private=True)))
    return _SIGNING_KEY[0]


def jose_config(workdir: Path) -> Path:
    # Bundled by wrangler from benches/jose-worker; `jose` resolves from the repo's node_modules.
    return ROOT / "benches" / "jose-worker" / "wrangler.toml"


def floor_config(workdir: Path, with_log: bool = False, verify: bool = False,
                 variant: str | None = None, js: str | None = None) -> Path:
    """The floor (`floor`), floor-verify, a log variant (`variant`, LOG_VARIANTS; `with_log`
    is floor-log), or any other small Worker (`variant` names it, `js` is its code)."""
    name = variant or ("floor-verify" if verify else "floor-log" if with_log else "floor")
    d = workdir / name
    d.mkdir(exist_ok=True)
    if js is None and verify:
        js = FLOOR_VERIFY_JS
    elif js is None:
        _what, module, per_request, *_ = LOG_VARIANTS.get(name, ("", "", "", 0, None))
        js = FLOOR_JS.replace("/*MODULE*/", module).replace("/*LOG*/", per_request)
    (d / "floor.js").write_text(js)
    (d / "wrangler.toml").write_text(
        f'name = "bench-{name}"\nmain = "floor.js"\ncompatibility_date = "2026-11-17"\n'
    )
    return d / "wrangler.toml"


def good_claims(now: int) -> dict:
    return dict(scope="orders:read", act={"sub": "agent:planner"}, iat=now, exp=now + 3500)


def mint_tokens(servers: LocalServers) -> dict[str, str]:
    """One token per algorithm (sanity checks, the load phase, benches/ab.py)."""
    now = int(time.time())
    return {alg: servers.issuer.mint(kid, **good_claims(now)) for alg, kid in KIDS.items()}


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([head, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])


# The refusal mix: each kind once per algorithm, in this order, repeated (equal proportions).
# kind -> attestgate's reason code in its decision line for it.
REFUSALS = {"bad-signature": "bad_signature", "expired": "expired",
            "wrong-audience": "audience_mismatch"}
REFUSAL_CYCLE = [(kind, alg) for alg in KIDS for kind in REFUSALS]


def mint_refusal(servers: LocalServers, kind: str, alg: str, now: int) -> str:
    issuer = servers.issuer
    if kind == "bad-signature":
        return tamper(issuer.mint(KIDS[alg], **good_claims(now)))
    if kind == "expired":  # beyond the 60 s skew of both Workers, lifetime 300 s
        return issuer.mint(KIDS[alg], **dict(good_claims(now), iat=now - 900, exp=now - 600))
    if kind == "wrong-audience":
        return issuer.mint(KIDS[alg], aud=OTHER_AUDIENCE, **good_claims(now))
    raise ValueError(kind)


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------------------------
# Workloads


class Workload:
    """One workload of the CPU phase: the Workers it drives and, for the k-th request of the run
    (the same k for every Worker, so each sees the same sequence), the path, the headers and the
    one status every answer must have. Tokens are minted before anything is timed."""

    kind = ""
    describe = ""

    def __init__(self, key: str, names: list[str], alg: str | None = None):
        self.key = key
        self.names = names
        self.alg = alg

    def request(self, name: str, k: int) -> tuple[str, dict, int]:
        raise NotImplementedError

    def meta(self) -> dict:
        return {"kind": self.kind, "alg": self.alg, "names": self.names,
                "describe": self.describe}


class UniqueWorkload(Workload):
    kind = "unique"
    describe = "a distinct token for every request"

    def __init__(self, servers, alg, names, total):
        super().__init__(f"unique {alg}", names, alg)
        now = int(time.time())
        self.tokens = [servers.issuer.mint(KIDS[alg], **good_claims(now)) for _ in range(total)]
        if len(set(self.tokens)) != len(self.tokens):
            raise RuntimeError("unique workload: two tokens are the same")

    def request(self, name, k):
        return ORDER_PATH, bearer(self.tokens[k]), 200


class SessionWorkload(Workload):
    """SESSIONS sessions served round-robin (request k belongs to session k % SESSIONS), each
    presenting its token USES times before it is replaced by a new one. The replacements are
    staggered over the sessions (session s starts s*USES/SESSIONS uses into its first token), so
    every stretch of the run has the same share of first uses: 1 request in USES."""

    kind = "session"
    describe = (f"each token used {USES} times, round-robin over {SESSIONS} concurrent "
                "sessions (staggered renewals)")

    def __init__(self, servers, alg, names, total):
        super().__init__(f"session {alg}", names, alg)
        now = int(time.time())
        self.tokens = {}
        for k in range(total):
            slot = self._slot(k)
            if slot not in self.tokens:
                self.tokens[slot] = servers.issuer.mint(KIDS[alg], **good_claims(now))

    @staticmethod
    def _slot(k: int) -> tuple[int, int]:
        s, j = k % SESSIONS, k // SESSIONS
        return s, (j + s * USES // SESSIONS) // USES

    def request(self, name, k):
        return ORDER_PATH, bearer(self.tokens[self._slot(k)]), 200

    def meta(self):
        return dict(super().meta(), sessions=SESSIONS, uses=USES, tokens=len(self.tokens))


class PublicWorkload(Workload):
    kind = "public"
    describe = f"GET {PUBLIC_PATH}, no token: a public route (the floors forward it)"

    def __init__(self, names):
        super().__init__("public", names)

    def request(self, name, k):
        return PUBLIC_PATH, {}, 200


class RefusalWorkload(Workload):
    kind = "refusal"
    describe = ("bad signature, expired, wrong audience in equal parts, ES256 and EdDSA, a "
                "distinct token every request: 401 from attestgate and jose (the floors forward)")

    def __init__(self, servers, names, total):
        super().__init__("refusal", names)
        now = int(time.time())
        self.tokens = [mint_refusal(servers, *REFUSAL_CYCLE[k % len(REFUSAL_CYCLE)], now)
                       for k in range(total)]

    def request(self, name, k):
        want = 401 if name in ("attestgate", "jose") else 200
        return ORDER_PATH, bearer(self.tokens[k]), want

    def meta(self):
        return dict(super().meta(), cycle=[f"{kind} {alg}" for kind, alg in REFUSAL_CYCLE])


class LogWorkload(Workload):
    """The floor and each way of writing the decision line, answering without a subrequest:
    with the line (GET ANSWER_PATH) or, as the "log, no line" workload, the same Workers
    without it (GET QUIET_PATH). A variant's cost per line is the difference of the two in the
    same process (each workerd process has its own baseline, a few tens of µs apart), measured in
    adjacent batches of the same round (their order alternates per round)."""

    kind = "log"
    describe = (f"GET {ANSWER_PATH}: the floor and each way of writing the decision line, "
                "answered by the Worker without a subrequest")

    def __init__(self, names, quiet: bool = False):
        super().__init__("log, no line" if quiet else "log", names)
        self.quiet = quiet
        if quiet:
            self.kind = "log-quiet"
            self.describe = (f"GET {QUIET_PATH}: the same Workers, the same answer, no log line "
                             "(each variant's own baseline)")

    def request(self, name, k):
        return (QUIET_PATH if self.quiet else ANSWER_PATH), {}, 200

    def meta(self):
        extra = {} if self.quiet else {"quiet_group": "log, no line", "variants": {
            n: {"what": LOG_VARIANTS[n][0], "lines_per_request": LOG_VARIANTS[n][3]}
            for n in self.names if n in LOG_VARIANTS}}
        return dict(super().meta(), **extra)


class IntentWorkload(Workload):
    """Issue 15: POST a payment with a 2 KB JSON body to a route with intent rules (type,
    actions, three bindings, one of them an exact decimal limit with its currency), a distinct
    token with `authorization_details` every request: attestgate only, to be read side by side
    with `unique ES256` (the same verification without the body and the intent check)."""

    kind = "intent"
    describe = ("POST /v1/payments/acc-1 with a 2 KB JSON body, a distinct ES256 token with "
                "authorization_details every request: the intent check on top of a verified request")

    def __init__(self, servers, names, total):
        super().__init__("intent ES256", names, "ES256")
        now = int(time.time())
        detail = {"type": "payment_initiation", "actions": ["initiate"], "identifier": "acc-1",
                  "creditorAccount": {"iban": "DE02100100109307118603"},
                  "instructedAmount": {"currency": "EUR", "amount": "100.00"}}
        self.tokens = [servers.issuer.mint(KIDS["ES256"], authorization_details=[detail],
                                           **good_claims(now)) for _ in range(total)]
        body = {"creditor": {"iban": "DE02100100109307118603", "name": "ACME"},
                "amount": "99.50", "currency": "EUR", "memo": ""}
        body["memo"] = "x" * (2048 - len(json.dumps(body)))
        self.body = json.dumps(body).encode()

    def request(self, name, k):
        headers = dict(bearer(self.tokens[k]), **{"content-type": "application/json"})
        return INTENT_PATH, headers, 200, self.body


INTENT_PATH = "/v1/payments/acc-1"


class ReceiptWorkload(Workload):
    """Issue 14: a verified request (a distinct ES256 token each) on the receipt route, and, as
    the "receipt, none" workload, the same request on the same route without a receipt, both
    through attestgate: the receipt's own CPU (claims, RFC 9530 digest, one WebCrypto ECDSA
    signature) is the difference, measured in adjacent batches of the same round."""

    kind = "receipt"
    describe = f"GET {RECEIPT_PATH}: a verified request on a route that signs a receipt"

    def __init__(self, servers, total, none: bool = False):
        super().__init__("receipt, none" if none else "receipt", ["attestgate"], "ES256")
        self.none = none
        if none:
            self.kind = "receipt-none"
            self.describe = f"GET {ORDER_PATH}: the same verified request, no receipt"
        now = int(time.time())
        self.tokens = [servers.issuer.mint(KIDS["ES256"], **good_claims(now))
                       for _ in range(total)]

    def request(self, name, k):
        return (ORDER_PATH if self.none else RECEIPT_PATH), bearer(self.tokens[k]), 200

    def meta(self):
        return dict(super().meta(), **({} if self.none else {"none_group": "receipt, none"}))


class InjectWorkload(Workload):
    """Issue 14: attestgate alone, a verified request (a distinct ES256 token every request) on
    the route whose upstream injects a static credential (a Worker secret, read once per
    isolate: the cached path) and, as the "inject, none" workload, the same kind of requests on
    the route without an upstream, in the same rounds. The cost of injecting is the difference
    per round (`inject_us`, `inject_ratio`)."""

    kind = "inject"
    describe = (f"GET {INJECT_PATH}: a verified request (a distinct ES256 token each) whose "
                "upstream gets a static injected credential, cached per isolate")

    def __init__(self, servers, total, injected: bool):
        super().__init__("inject" if injected else "inject, none", ["attestgate"], "ES256")
        if not injected:
            self.kind = "inject-none"
            self.describe = (f"GET {ORDER_PATH}: the same requests on the route without an "
                             "upstream (the baseline of the inject workload)")
        self.path = INJECT_PATH if injected else ORDER_PATH
        now = int(time.time())
        self.tokens = [servers.issuer.mint(KIDS["ES256"], **good_claims(now))
                       for _ in range(total)]

    def request(self, name, k):
        return self.path, bearer(self.tokens[k]), 200

    def meta(self):
        extra = {"base_group": "inject, none"} if self.kind == "inject" else {}
        return dict(super().meta(), **extra)


class DenyWorkload(Workload):
    """Issue 16: a verified request (a distinct ES256 token each time) on a route that checks the
    deny list from the isolate's fresh view (DENY_PATH), or, as "deny, no check", the same
    request without the check (ORDER_PATH): attestgate only, in adjacent batches of each round
    (their order alternating with the rounds). The cost is the difference per round (`deny_us`,
    `deny_ratio`); benches/pair.py measures the same two paths interleaved request by request
    in two processes, with less noise."""

    kind = "deny"

    def __init__(self, servers, total, check: bool):
        super().__init__("deny, fresh view" if check else "deny, no check", ["attestgate"], "ES256")
        if not check:
            self.kind = "deny-off"
        self.path = DENY_PATH if check else ORDER_PATH
        self.describe = ("unique ES256 tokens on a deny_check = \"cached\" route"
                         if check else "the same requests on a route without the deny check")
        now = int(time.time())
        self.tokens = [servers.issuer.mint(KIDS["ES256"], **good_claims(now)) for _ in range(total)]

    def request(self, name, k):
        return self.path, bearer(self.tokens[k]), 200

    def meta(self):
        extra = {"base_group": "deny, no check"} if self.kind == "deny" else {}
        return dict(super().meta(), **extra)


class AuditWorkload(Workload):
    """Issue 17: the decision log's cost in async mode. A distinct ES256 token every request on
    the route with audit = "async" (the record built and queued, then sequenced by the AuditLog
    Durable Object, in the same workerd process, through waitUntil) and, as "audit, off", the
    same requests on the route without it; the difference is the log's CPU per request."""

    kind = "audit"
    describe = f'GET {AUDIT_PATH}: unique ES256 tokens on a route with audit = "async"'

    def __init__(self, servers, names, total, off: bool = False):
        super().__init__("audit, off" if off else "audit", names, "ES256")
        self.off = off
        if off:
            self.kind = "audit-off"
            self.describe = f"GET {ORDER_PATH}: the same requests on the route without audit"
        now = int(time.time())
        self.tokens = [servers.issuer.mint(KIDS["ES256"], **good_claims(now)) for _ in range(total)]

    def request(self, name, k):
        return (ORDER_PATH if self.off else AUDIT_PATH), bearer(self.tokens[k]), 200


class MaskWorkload(Workload):
    """Issue 18: a verified request (ES256, a distinct token each time) whose origin answers a
    10 KB JSON document: on `mask-on` masked by the route's rules (the token has `act`), on
    `mask-off` (the same answer, no mask) passed through. The difference is the masking."""

    kind = "mask"
    @staticmethod
    def document(size: int = 10 * 1024) -> bytes:
        """Customer records until the document is about `size` bytes."""
        records, i = [], 0
        while len(json.dumps({"customers": records})) < size:
            records.append({"id": f"c-{i}", "name": f"Customer {i}", "ssn": f"123-45-{i:04}",
                            "email": f"user{i}@example.com",
                            "internal": {"score": i / 100, "tags": ["a", "b"]},
                            "orders": [i, i + 1, i + 2]})
            i += 1
        return json.dumps({"customers": records}).encode()

    def __init__(self, servers, names, total, masked: bool):
        super().__init__("mask" if masked else "mask, off", names, "ES256")
        self.path = "/v1/customers/7" if masked else "/v1/records/7"
        if not masked:
            self.kind = "mask-off"
        self.describe = (f"GET {self.path}: a verified request answered with a "
                         f"{len(self.document())}-byte JSON document, "
                         + ("masked (3 rules)" if masked else "not masked (same answer)"))
        self.body = self.document()
        servers.canned[self.path] = {"body": self.body,
                                     "headers": {"content-type": "application/json"}}
        now = int(time.time())
        self.tokens = [servers.issuer.mint(KIDS["ES256"], **good_claims(now)) for _ in range(total)]

    def request(self, name, k):
        return self.path, bearer(self.tokens[k]), 200

    def meta(self):
        return dict(super().meta(), body_bytes=len(self.body))


WORKLOAD_KINDS = ["unique", "session", "public", "refusal", "log", "intent", "receipt", "inject", "deny", "audit", "mask"]
TOKEN_NAMES = ["attestgate", "jose", "floor", "floor-log", "floor-verify"]


def make_workloads(servers, kinds: list[str], total: int) -> list[Workload]:
    """Every workload of the run, with every token it will send (`total` requests per Worker:
    the warm-up and every round)."""
    out: list[Workload] = []
    started = time.perf_counter()
    for kind in kinds:
        if kind == "unique":
            out += [UniqueWorkload(servers, alg, TOKEN_NAMES, total) for alg in KIDS]
        elif kind == "session":
            out += [SessionWorkload(servers, alg, TOKEN_NAMES, total) for alg in KIDS]
        elif kind == "public":
            out.append(PublicWorkload(["attestgate", "jose", "floor", "floor-log"]))
        elif kind == "refusal":
            out.append(RefusalWorkload(servers, ["attestgate", "jose", "floor", "floor-log"],
                                       total))
        elif kind == "intent":
            out.append(IntentWorkload(servers, ["attestgate"], total))
        elif kind == "deny":
            out += [DenyWorkload(servers, total, check) for check in (True, False)]
        elif kind == "audit":
            out.append(AuditWorkload(servers, ["attestgate"], total))
            out.append(AuditWorkload(servers, ["attestgate"], total, off=True))
        elif kind == "log":
            out.append(LogWorkload(["floor"] + LOG_NAMES))
            out.append(LogWorkload(["floor"] + LOG_NAMES, quiet=True))
        elif kind == "receipt":
            out += [ReceiptWorkload(servers, total), ReceiptWorkload(servers, total, none=True)]
        elif kind == "inject":
            out += [InjectWorkload(servers, total, True), InjectWorkload(servers, total, False)]
        elif kind == "mask":
            out.append(MaskWorkload(servers, ["attestgate"], total, masked=True))
            out.append(MaskWorkload(servers, ["attestgate"], total, masked=False))
        else:
            raise SystemExit(f"unknown workload {kind!r} (known: {', '.join(WORKLOAD_KINDS)})")
    minted = sum(len(getattr(w, "tokens", ())) for w in out)
    log(f"minted {minted} tokens with joserfc in {time.perf_counter() - started:.1f} s "
        f"({total} requests per Worker and workload)")
    return out


# ---------------------------------------------------------------------------------------------
# Sanity: every Worker answers as it should before anything is timed


def log_lines(w: Worker, since: int = 0) -> tuple[list[str], int]:
    """The Worker's output lines written after byte offset `since`, and the new offset."""
    try:
        data = w.log_path.read_bytes()
    except OSError:
        return [], since
    return data[since:].decode(errors="replace").splitlines(), len(data)


def wait_lines(w: Worker, since: int, pred, want: int, timeout: float = 3.0) -> list[str]:
    """Waits (bounded) until `want` new lines matching `pred` were written; returns them (more
    if more came: the caller checks the count)."""
    deadline = time.time() + timeout
    while True:
        lines = [line for line in log_lines(w, since)[0] if pred(line)]
        if len(lines) >= want or time.time() > deadline:
            time.sleep(0.1)  # anything more that was on its way
            return [line for line in log_lines(w, since)[0] if pred(line)]
        time.sleep(0.05)


def decision(line: str) -> dict | None:
    start = line.find("{")
    if DECISION_MARK not in line or start < 0:
        return None
    try:
        return json.loads(line[start:])
    except ValueError:
        return None


def count_decisions(w: Worker) -> int:
    try:
        return w.log_path.read_bytes().count(DECISION_MARK.encode())
    except OSError:
        return 0


def sanity(workers: dict[str, Worker], tokens: dict[str, str], servers: LocalServers | None = None,
           kinds: list[str] | None = None):
    """Both verifying Workers accept both tokens and forward verified claims; they refuse a
    tampered token and a missing one; the floors forward; the Workers meant to log do. Then, for
    the workloads of this run: the public route is forwarded by attestgate and jose; every kind
    of the refusal mix is refused with 401 by both (attestgate for the expected reason); each
    log variant writes its line, as often as it should."""
    kinds = kinds if kinds is not None else WORKLOAD_KINDS
    for name in ("attestgate", "jose"):
        w = workers[name]
        for alg, token in tokens.items():
            status, body = w.get(ORDER_PATH, bearer(token))
            if status != 200:
                raise RuntimeError(f"{name} {alg}: expected 200, got {status} {body[:300]!r}")
            verified = json.loads(body).get("verified", {})
            if verified.get("x-verified-user") != "user:alice" or verified.get(
                "x-verified-agent"
            ) != "agent:planner":
                raise RuntimeError(f"{name} {alg}: origin saw {verified}")
            status, _ = w.get(ORDER_PATH, bearer(tamper(token)))
            if status != 401:
                raise RuntimeError(f"{name} {alg}: tampered token got {status}")
        status, _ = w.get(ORDER_PATH, {})
        if status != 401:
            raise RuntimeError(f"{name}: no token got {status}")
    for name in ("floor", "floor-log"):
        status, _ = workers[name].get(ORDER_PATH, {})
        if status != 200:
            raise RuntimeError(f"{name}: got {status}")
    # Each Worker that should write a decision line does, and only those (a log line has a
    # price; floor-log once wrote nothing and the price went unseen).
    time.sleep(0.3)
    for name, wants in (("attestgate", True), ("floor-log", True), ("floor", False)):
        written = DECISION_MARK in workers[name].log_path.read_text(errors="replace")
        if written != wants:
            raise RuntimeError(f"{name}: decision line {'missing' if wants else 'unexpected'}")
    fv = workers["floor-verify"]
    for alg, token in tokens.items():
        status, body = fv.get(ORDER_PATH, bearer(token))
        if status != 200:
            raise RuntimeError(f"floor-verify {alg}: expected 200, got {status} {body[:200]!r}")
        status, _ = fv.get(ORDER_PATH, bearer(tamper(token)))
        if status != 401:
            raise RuntimeError(f"floor-verify {alg}: tampered token got {status}")

    if "public" in kinds:
        for name in ("attestgate", "jose", "floor", "floor-log"):
            status, body = workers[name].get(PUBLIC_PATH, {})
            if status != 200 or json.loads(body).get("path") != PUBLIC_PATH:
                raise RuntimeError(f"{name} {PUBLIC_PATH}: the origin did not answer it "
                                   f"({status} {body[:200]!r})")
    if "refusal" in kinds and servers is not None:
        now = int(time.time())
        a = workers["attestgate"]
        for kind, alg in REFUSAL_CYCLE:
            token = mint_refusal(servers, kind, alg, now)
            since = log_lines(a)[1]
            for name in ("attestgate", "jose"):
                status, body = workers[name].get(ORDER_PATH, bearer(token))
                if status != 401:
                    raise RuntimeError(f"{name}: {kind} {alg} token got {status}, not 401 "
                                       f"{body[:200]!r}")
            lines = wait_lines(a, since, lambda line: decision(line) is not None, 1)
            reasons = [decision(line).get("reason") for line in lines]
            if reasons != [REFUSALS[kind]]:
                raise RuntimeError(f"attestgate: {kind} {alg} refused for {reasons}, expected "
                                   f"{REFUSALS[kind]}")
    if "receipt" in kinds and servers is not None:
        # Issue 14: the receipt route answers, and the origin received a receipt.
        token = mint_tokens(servers)["ES256"]
        mark = servers.recorder.count()
        status, body = workers["attestgate"].get(RECEIPT_PATH, bearer(token))
        seen = servers.recorder.snapshot()[mark:]
        if status != 200 or not seen or not any(
                n == "attestgate-receipt" for n, _ in seen[-1]["headers"]):
            raise RuntimeError(f"attestgate {RECEIPT_PATH}: no receipt reached the origin "
                               f"({status} {body[:200]!r})")
    if "inject" in kinds:
        token = servers.issuer.mint(KIDS["ES256"], **good_claims(int(time.time()))) if servers \
            else next(iter(tokens.values()))
        status, body = workers["attestgate"].get(INJECT_PATH, bearer(token))
        if status != 200 or json.loads(body).get("path") != INJECT_PATH:
            raise RuntimeError(f"attestgate {INJECT_PATH}: expected the origin's 200, got "
                               f"{status} {body[:200]!r}")
    if "log" in kinds:
        for name in ["floor"] + LOG_NAMES:
            w = workers[name]
            since = log_lines(w)[1]
            for _ in range(SAMPLE_EVERY):
                status, _ = w.get(ANSWER_PATH, {})
                if status != 200:
                    raise RuntimeError(f"{name} {ANSWER_PATH}: got {status}")
            if name == "floor":
                pred, want = (lambda line: "decision" in line or line.strip() == "x"), 0
            else:
                pred = LOG_VARIANTS[name][4]
                want = round(SAMPLE_EVERY * LOG_VARIANTS[name][3])
            got = len(wait_lines(w, since, pred, want))
            if got != want:
                raise RuntimeError(f"{name}: {got} log lines for {SAMPLE_EVERY} requests, "
                                   f"expected {want}")
            since = log_lines(w)[1]
            for _ in range(SAMPLE_EVERY):
                status, _ = w.get(QUIET_PATH, {})
                if status != 200:
                    raise RuntimeError(f"{name} {QUIET_PATH}: got {status}")
            time.sleep(0.2)
            if log_lines(w, since)[0]:
                raise RuntimeError(f"{name}: {QUIET_PATH} wrote to the log")


# ---------------------------------------------------------------------------------------------
# 1. CPU per request


def mean_ci(values: list[float]) -> dict | None:
    """The mean and the half-width of its 95% interval (normal approximation) of per-round
    differences (issues 14 and 16: a cost of a few per cent under the rounds' noise)."""
    if len(values) < 2:
        return None
    return {"mean": statistics.mean(values),
            "ci95": 1.96 * statistics.stdev(values) / len(values) ** 0.5, "n": len(values)}


def summary(values: list[float]) -> dict | None:
    values = sorted(values)
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": values[0],
        "max": values[-1],
        "n": len(values),
    }


class Batch:
    """CPU of one interleaved batch: microseconds per request of each Worker's workerd (and of
    wrangler's proxy workerd, where there is one), how it was counted, unexpected statuses."""

    def __init__(self):
        self.user_us: dict[str, float] = {}
        self.proxy_us: dict[str, float] = {}
        self.accounting: set[str] = set()
        self.unexpected = 0
        self.examples: list[str] = []


def interleaved_batch(plan, n: int, start: int = 0) -> Batch:
    """N requests to each Worker of `plan`, interleaved one by one in the plan's order, so drift
    and background load hit all alike. A plan item is `(label, worker, path, headers, expected
    status)` (the same request every time; benches/ab.py) or `(label, worker, request)` with
    `request(k) -> (path, headers, expected status)` for the k-th request of the run (k counts
    from `start`). Used by cpu_rounds and by benches/ab.py."""
    items = []
    for item in plan:
        if len(item) == 5:
            label, w, path, headers, want = item
            items.append((label, w, lambda k, fixed=(path, headers, want): fixed))
        else:
            items.append(item)

    def cpu(w):
        return proc_cpu(w.user_pid), proc_cpu(w.proxy_pid) if w.proxy_pid else None

    before = {label: cpu(w) for label, w, _ in items}
    batch = Batch()
    for i in range(n):
        k = start + i
        for label, w, request in items:
            path, headers, want, *body = request(k)
            # A workload with a body (intent) sends a POST: (path, headers, status, body).
            status, _ = (w.get(path, headers, method="POST", body=body[0]) if body
                         else w.get(path, headers))
            if status != want:
                batch.unexpected += 1
                if len(batch.examples) < 5:
                    batch.examples.append(f"{label} request {k} {path}: {status}, expected {want}")
    after = {label: cpu(w) for label, w, _ in items}
    for label, *_ in items:
        ns, how = cpu_delta_ns(before[label][0], after[label][0])
        batch.accounting.add(how)
        batch.user_us[label] = ns / n / 1000
        if before[label][1] is not None:
            pns, _ = cpu_delta_ns(before[label][1], after[label][1])
            batch.proxy_us[label] = pns / n / 1000
    return batch


def workload_plan(workers, wl: Workload, order: list[str]):
    return [(name, workers[name], lambda k, name=name: wl.request(name, k)) for name in order]


def cpu_rounds(workers, workloads: list[Workload], rounds, n, warmup, deadline) -> dict:
    """Per round and workload: N requests to each of the workload's Workers, interleaved one by
    one (the order rotates per round). Returns the per-round CPU microseconds per request of
    each Worker's workerd (user Worker process, and wrangler's proxy process for reference).
    Any answer other than the workload's expected one stops the run."""

    def check(batch, what):
        if batch.unexpected:
            raise RuntimeError(f"{what}: {batch.unexpected} unexpected statuses, e.g. "
                               + "; ".join(batch.examples))

    log(f"warm-up: {warmup} requests per Worker and workload")
    for wl in workloads:
        if time.time() > deadline:
            raise Deadline()
        check(interleaved_batch(workload_plan(workers, wl, wl.names), warmup, 0),
              f"warm-up {wl.key}")

    results: dict = {wl.key: {name: [] for name in wl.names} for wl in workloads}
    proxy: dict = {wl.key: {name: [] for name in wl.names} for wl in workloads}
    methods = set()
    for r in range(rounds):
        this_round = list(workloads)
        if r % 2:  # the two log-line batches, which are compared with each other, swap places
            kinds = [wl.kind for wl in this_round]
            # (so do the injection's and the deny check's pairs: issues 14 and 16)
            for a, b in (("log", "log-quiet"), ("inject", "inject-none"), ("deny", "deny-off")):
                if a in kinds and b in kinds:
                    i, j = kinds.index(a), kinds.index(b)
                    this_round[i], this_round[j] = this_round[j], this_round[i]
        for wl in this_round:
            if time.time() > deadline:
                raise Deadline()
            shift = r % len(wl.names)
            order = wl.names[shift:] + wl.names[:shift]
            batch = interleaved_batch(workload_plan(workers, wl, order), n, warmup + r * n)
            check(batch, f"round {r + 1} {wl.key}")
            methods.update(batch.accounting)
            for name in order:
                results[wl.key][name].append(batch.user_us[name])
                if name in batch.proxy_us:
                    proxy[wl.key][name].append(batch.proxy_us[name])
        for wl in workloads:
            log(f"round {r + 1}/{rounds} {wl.key} (us CPU/request): " + "  ".join(
                f"{name} {results[wl.key][name][-1]:.0f}" for name in wl.names))

    meta = {wl.key: wl.meta() for wl in workloads}
    out = {"workloads": meta, "per_round_us": results, "proxy_per_round_us": proxy,
           "accounting": sorted(methods)}
    out["summary"] = cpu_summary(results, meta)
    return out


def group_kind(group: str, meta: dict | None) -> str:
    if meta and group in meta:
        return meta[group]["kind"]
    # Saved runs from before the workloads: "ES256"/"EdDSA" sent one token for every request,
    # "none" was attestgate's public route, jose and floor-verify without a token.
    return "legacy-none" if group == "none" else "legacy-token"


def cpu_summary(results: dict, meta: dict | None = None) -> dict:
    """Medians and ratios from the per-round figures (also for `--report` on a saved JSON).
    Every ratio is computed per round (same round, same conditions), then summarised."""
    table = {}
    for group, by in results.items():
        kind = group_kind(group, meta)
        row = {name: summary(v) for name, v in by.items() if v}

        def has(*names):
            return all(by.get(name) for name in names)

        def per_round(f, *names):
            return summary([f(*vals) for vals in zip(*(by[name] for name in names))])

        if kind in ("unique", "session", "refusal", "legacy-token"):
            if has("attestgate", "jose"):
                row["ratio_raw"] = per_round(lambda a, j: a / j, "attestgate", "jose")
            if has("attestgate", "jose", "floor"):
                row["net_attestgate"] = per_round(lambda a, f: a - f, "attestgate", "floor")
                row["net_jose"] = per_round(lambda j, f: j - f, "jose", "floor")
                row["ratio_net"] = summary([(a - f) / (j - f) for a, j, f in zip(
                    by["attestgate"], by["jose"], by["floor"]) if j > f])
            if has("floor-log", "floor"):
                # attestgate writes the decision line SPEC §5 requires; the jose Worker writes
                # none. The same line's cost, measured in this round as floor-log − floor...
                row["log_line"] = per_round(lambda fl, f: fl - f, "floor-log", "floor")
            if has("attestgate", "jose", "floor-log", "floor"):
                # ... taken off attestgate: the comparison of the checks alone.
                row["ratio_raw_ex_log"] = per_round(lambda a, j, fl, f: (a - (fl - f)) / j,
                                                    "attestgate", "jose", "floor-log", "floor")
            if has("floor-verify", "jose"):
                # The lower bound (floor + one WebCrypto verify) relative to jose: the best ratio
                # any WebCrypto-based verifier without a cache could reach here ...
                row["ratio_floor_verify"] = per_round(lambda v, j: v / j, "floor-verify", "jose")
            if has("floor-verify", "floor-log", "floor", "jose"):
                # ... and the same bound for a verifier that also writes one log line per
                # request, as SPEC §5 requires of attestgate: floor-verify + log line, over jose.
                row["ratio_floor_verify_log"] = per_round(
                    lambda v, fl, f, j: (v + fl - f) / j, "floor-verify", "floor-log", "floor",
                    "jose")
        elif kind == "public":
            if has("attestgate", "floor"):
                row["ratio_floor"] = per_round(lambda a, f: a / f, "attestgate", "floor")
            if has("jose", "floor"):
                row["jose_floor"] = per_round(lambda j, f: j / f, "jose", "floor")
            if has("attestgate", "jose"):
                row["ratio_raw"] = per_round(lambda a, j: a / j, "attestgate", "jose")
            if has("floor-log", "floor"):
                row["log_line"] = per_round(lambda fl, f: fl - f, "floor-log", "floor")
            if has("attestgate", "floor-log"):
                row["ratio_floor_log"] = per_round(lambda a, fl: a / fl, "attestgate",
                                                   "floor-log")
            if has("attestgate", "floor-log", "floor"):
                row["ratio_floor_ex_log"] = per_round(lambda a, fl, f: (a - (fl - f)) / f,
                                                      "attestgate", "floor-log", "floor")
        elif kind == "receipt" and has("attestgate"):
            # Issue 14: with a receipt / the same request without, per round (same process).
            none = results.get((meta or {}).get(group, {}).get("none_group", "receipt, none"), {})
            if none.get("attestgate"):
                row["receipt_ratio"] = summary(
                    [r / n for r, n in zip(by["attestgate"], none["attestgate"]) if n > 0])
                row["receipt_cost"] = summary(
                    [r - n for r, n in zip(by["attestgate"], none["attestgate"])])
        elif kind == "inject" and has("attestgate"):
            base = results.get((meta or {}).get(group, {}).get("base_group", ""), {})
            if base.get("attestgate"):
                pairs = list(zip(by["attestgate"], base["attestgate"]))
                row["inject_us"] = summary([a - b for a, b in pairs])
                row["inject_ratio"] = summary([a / b for a, b in pairs if b > 0])
                row["inject_us_mean"] = mean_ci([a - b for a, b in pairs])
        elif kind == "deny" and has("attestgate"):
            # Issue 16: with the check / the same request without it, per round (same process;
            # runs saved before the base group was named called it the same).
            base_name = (meta or {}).get(group, {}).get("base_group", "deny, no check")
            base = results.get(base_name, {}) if base_name != group else {}
            if base.get("attestgate"):
                pairs = list(zip(by["attestgate"], base["attestgate"]))
                row["deny_us"] = summary([a - b for a, b in pairs])
                row["deny_ratio"] = summary([a / b for a, b in pairs if b > 0])
                row["deny_us_mean"] = mean_ci([a - b for a, b in pairs])
        elif kind == "log" and has("floor"):
            m = (meta or {}).get(group, {})
            variants = m.get("variants", {})
            quiet = results.get(m.get("quiet_group", ""), {})
            row["log_per_request"] = {}  # with the line − without it, the same process
            row["log_per_line"] = {}
            row["log_over_floor"] = {}   # with the line − the floor with it (two processes)
            for name in by:
                if not by[name]:
                    continue
                rate = variants.get(name, {}).get("lines_per_request") or LOG_VARIANTS.get(
                    name, (None, None, None, 1.0))[3]
                if quiet.get(name):
                    own = [v - q for v, q in zip(by[name], quiet[name])]
                    row["log_per_request"][name] = summary(own)
                    row["log_per_line"][name] = summary([x / rate for x in own])
                if name != "floor":
                    row["log_over_floor"][name] = per_round(lambda v, f: v - f, name, "floor")
        table[group] = row
    return table


# ---------------------------------------------------------------------------------------------
# 2. Load (wrk)

WRK_LAT = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERR = re.compile(r"Socket errors:.*")
UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, headers: dict, connections: int, duration: int) -> dict:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=duration + 30).stdout
    lat = {m.group(1): float(m.group(2)) * UNIT[m.group(3)] for m in WRK_LAT.finditer(out)}
    rps = WRK_RPS.search(out)
    non2xx = WRK_NON2XX.search(out)
    err = WRK_ERR.search(out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": err.group(0) if err else "",
    }


def run_python_client(host: str, port: int, path: str, headers: dict, duration: int) -> dict:
    """Fallback without wrk: one keep-alive connection, sequential requests."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    lat = []
    bad = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end and len(lat) < 200_000:
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        lat.append((time.perf_counter() - t) * 1000)
        bad += resp.status >= 300
    conn.close()
    lat.sort()
    return {
        "rps": len(lat) / duration,
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "non2xx": bad,
        "socket_errors": "",
    }


def load_phase(servers, workers, tokens, conns, duration, rounds, deadline) -> dict:
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        log("wrk not found (apt-get install wrk): sequential Python client, 1 connection only")
        conns = [1]
    targets = [("origin direct", servers.port, {})]
    targets.append(("floor (pass-through Worker)", workers["floor"].port, {}))
    targets.append(("floor-log (pass-through + log line)", workers["floor-log"].port, {}))
    for alg, token in tokens.items():
        for name in ("attestgate", "jose"):
            targets.append((f"{name} {alg}", workers[name].port,
                            {"authorization": f"Bearer {token}"}))
    results: dict = {}
    for c in conns:
        for r in range(rounds):
            seq = targets if r % 2 == 0 else list(reversed(targets))
            for label, port, headers in seq:
                if time.time() + duration + 30 > deadline:
                    raise Deadline()
                if have_wrk:
                    res = run_wrk(f"http://127.0.0.1:{port}{ORDER_PATH}", headers, c, duration)
                else:
                    res = run_python_client("127.0.0.1", port, ORDER_PATH, headers, duration)
                results.setdefault(f"c{c}", {}).setdefault(label, []).append(res)
                log(f"load c={c} {label}: {res['rps']:.0f} rps  p50 {res['p50_ms']} ms  "
                    f"p99 {res['p99_ms']} ms  non2xx {res['non2xx']} {res['socket_errors']}")
    table = {}
    for c, by_label in results.items():
        table[c] = {}
        for label, runs in by_label.items():
            table[c][label] = {
                "rps": statistics.median(x["rps"] for x in runs),
                "p50_ms": statistics.median(x["p50_ms"] for x in runs),
                "p99_ms": statistics.median(x["p99_ms"] for x in runs),
                "non2xx": sum(x["non2xx"] for x in runs),
                "runs": len(runs),
            }
    return {"tool": "wrk" if have_wrk else "python", "duration_s": duration, "table": table}


# ---------------------------------------------------------------------------------------------
# 3. Cold start

# Each scenario runs on a fresh workerd process, started with a TCP probe (nothing reaches the
# Worker before the first timed request): (Worker, scenario, steps), a step being (label, path,
# sends a fresh verified token).
COLD_SCENARIOS = [
    ("empty", "first request", [("first request", "/", False)]),
    ("attestgate-load", "first request", [("first request", "/", False)]),
    ("jose-load", "first request", [("first request", "/", False)]),
    ("floor", "first request", [("first request", PUBLIC_PATH, False)]),
    ("attestgate", "verified first", [("first verified", ORDER_PATH, True)]),
    ("attestgate", "public first", [("first public", PUBLIC_PATH, False),
                                    ("then first verified", ORDER_PATH, True)]),
    ("jose", "verified first", [("first verified", ORDER_PATH, True)]),
    ("jose", "public first", [("first public", PUBLIC_PATH, False),
                              ("then first verified", ORDER_PATH, True)]),
]
COLD_WHAT = {
    "empty": "an empty Worker (the runtime's own first request)",
    "attestgate-load": "loads attestgate's bundle (shim + wasm instance), does not call it",
    "jose-load": "loads the jose Worker's bundle, does not call it",
    "floor": "the pass-through floor (the runtime's first forwarded request)",
    "attestgate": "attestgate",
    "jose": "jose",
}


def cold_workers(workers: dict[str, Worker], workdir: Path) -> dict[str, DirectWorker]:
    """The Workers the cold phase restarts: copies of attestgate, jose and the floor (their
    bundles reused), the two bundle loaders and the empty Worker."""
    a, j, fl = workers["attestgate"], workers["jose"], workers["floor"]
    empty = floor_config(workdir, variant="cold-empty", js=COLD_EMPTY_JS)
    return {
        "empty": DirectWorker("cold-empty", empty, workdir),
        "attestgate-load": DirectWorker("cold-attestgate-load", a.config, workdir, a.vars,
                                        entry_js=COLD_LOAD_JS, bundle_of=a.name),
        "jose-load": DirectWorker("cold-jose-load", j.config, workdir, j.vars,
                                  entry_js=COLD_LOAD_JS, bundle_of=j.name),
        "floor": DirectWorker("cold-floor", fl.config, workdir, fl.vars, bundle_of=fl.name),
        "attestgate": DirectWorker("cold-attestgate", a.config, workdir, a.vars,
                                   bundle_of=a.name),
        "jose": DirectWorker("cold-jose", j.config, workdir, j.vars, bundle_of=j.name),
    }


def cold_run(w: DirectWorker, steps, tokens: list[str]) -> dict:
    w.start(probe="tcp")
    try:
        run = {"listen_ms": w.ready_s * 1000,
               "listen_cpu_ms": (w.ready_cpu[1] if w.ready_cpu[1] is not None
                                 else w.ready_cpu[0] * 1e9 / CLK_TCK) / 1e6,
               "steps": []}
        last = None
        for label, path, verified in steps:
            headers = bearer(tokens.pop()) if verified else {}
            before = proc_cpu(w.user_pid)
            t = time.perf_counter()
            status, body = w.get(path, headers)
            ms = (time.perf_counter() - t) * 1000
            ns, how = cpu_delta_ns(before, proc_cpu(w.user_pid))
            if status != 200:
                raise RuntimeError(f"cold {w.name} {label}: {status} {body[:200]!r}")
            run["steps"].append({"label": label, "ms": ms, "cpu_ms": ns / 1e6,
                                 "accounting": how})
            last = (path, headers)
        lat = []
        for _ in range(20):
            t = time.perf_counter()
            status, _ = w.get(*last)
            lat.append((time.perf_counter() - t) * 1000)
            if status != 200:
                raise RuntimeError(f"cold {w.name} steady: {status}")
        run["steady_ms"] = statistics.median(lat)
        return run
    finally:
        w.stop()


def cold_phase(servers, workers, workdir, restarts, deadline) -> dict:
    cw = cold_workers(workers, workdir)
    now = int(time.time())
    # Every verified request of the phase gets a token no Worker has seen, minted now.
    need = restarts * sum(v for _, _, steps in COLD_SCENARIOS for _, _, v in steps)
    tokens = [servers.issuer.mint(KIDS["ES256"], **good_claims(now)) for _ in range(need)]
    runs: dict = {f"{w} | {s}": [] for w, s, _ in COLD_SCENARIOS}
    for r in range(restarts):
        shift = r % len(COLD_SCENARIOS)
        for name, scenario, steps in COLD_SCENARIOS[shift:] + COLD_SCENARIOS[:shift]:
            if time.time() + 60 > deadline:
                raise Deadline()
            run = cold_run(cw[name], steps, tokens)
            runs[f"{name} | {scenario}"].append(run)
            log(f"cold {name} ({scenario}): listening after {run['listen_ms']:.0f} ms "
                f"({run['listen_cpu_ms']:.0f} ms CPU); " + "; ".join(
                    f"{s['label']} {s['ms']:.1f} ms ({s['cpu_ms']:.1f} ms CPU)"
                    for s in run["steps"]) + f"; then {run['steady_ms']:.2f} ms")
    return {"restarts": restarts, "token": "ES256", "what": COLD_WHAT, "runs": runs,
            "summary": cold_summary(runs)}


def cold_summary(runs: dict) -> dict:
    """Medians per scenario and step, and the derived figures; differences and ratios per
    restart (the scenarios of one restart ran one after another), then summarised."""
    out: dict = {"scenarios": {}, "derived": {}}
    for key, rs in runs.items():
        if not rs:
            continue
        out["scenarios"][key] = {
            "listen_ms": summary([r["listen_ms"] for r in rs]),
            "listen_cpu_ms": summary([r["listen_cpu_ms"] for r in rs]),
            "steady_ms": summary([r["steady_ms"] for r in rs]),
            "steps": [{"label": s["label"],
                       "ms": summary([r["steps"][i]["ms"] for r in rs]),
                       "cpu_ms": summary([r["steps"][i]["cpu_ms"] for r in rs])}
                      for i, s in enumerate(rs[0]["steps"])],
        }

    def step(key, i, field):
        return [r["steps"][i][field] for r in runs.get(key, [])]

    def pair(f, a, b):
        vals = [f(x, y) for x, y in zip(a, b)]
        return summary(vals) if vals else None

    d = out["derived"]
    for name in ("attestgate", "jose"):
        for field in ("cpu_ms", "ms"):
            unit = "cpu" if field == "cpu_ms" else "wall"
            d[f"instantiation_{unit}_ms {name}"] = pair(
                lambda x, y: x - y, step(f"{name}-load | first request", 0, field),
                step("empty | first request", 0, field))
            # the first public request over the bundle's instantiation: for attestgate the
            # policy compile (Gate::from_embedded) and the first use of the request path and of
            # the forward
            d[f"public_over_instantiation_{unit}_ms {name}"] = pair(
                lambda x, y: x - y, step(f"{name} | public first", 0, field),
                step(f"{name}-load | first request", 0, field))
    for field in ("cpu_ms", "ms"):
        unit = "cpu" if field == "cpu_ms" else "wall"
        d[f"floor_forward_over_empty_{unit}_ms"] = pair(
            lambda x, y: x - y, step("floor | first request", 0, field),
            step("empty | first request", 0, field))
        d[f"first_verified_ratio_{unit}"] = pair(
            lambda x, y: x / y, step("attestgate | verified first", 0, field),
            step("jose | verified first", 0, field))
        d[f"verified_after_public_ratio_{unit}"] = pair(
            lambda x, y: x / y, step("attestgate | public first", 1, field),
            step("jose | public first", 1, field))
    return {"scenarios": out["scenarios"], "derived": {k: v for k, v in d.items() if v}}


def cold_phase_wrangler(workers, tokens, restarts, deadline) -> dict:
    """`--runtime wrangler`: restarts attestgate and jose in `wrangler dev` (its HTTP readiness
    probe reaches the Worker first, so for attestgate the policy is compiled before the first
    verified request is timed). The figures of the runs before issue 19."""
    res: dict = {}
    for name in ("attestgate", "jose"):
        w = workers[name]
        runs = []
        for _ in range(restarts):
            if time.time() + 60 > deadline:
                raise Deadline()
            w.stop()
            w.start()
            t = time.perf_counter()
            status, _ = w.get(ORDER_PATH, bearer(tokens["ES256"]))
            first = (time.perf_counter() - t) * 1000
            lat = []
            for _ in range(20):
                t = time.perf_counter()
                w.get(ORDER_PATH, bearer(tokens["ES256"]))
                lat.append((time.perf_counter() - t) * 1000)
            runs.append({
                "ready_s": w.ready_s,
                "first_verified_ms": first,
                "status": status,
                "steady_ms": statistics.median(lat),
            })
            log(f"cold {name}: ready {w.ready_s:.2f} s, first verified request {first:.1f} ms "
                f"(then {statistics.median(lat):.2f} ms)")
        res[name] = {
            "ready_s": summary([r["ready_s"] for r in runs]),
            "first_verified_ms": summary([r["first_verified_ms"] for r in runs]),
            "steady_ms": summary([r["steady_ms"] for r in runs]),
            "runs": runs,
        }
    return res


# ---------------------------------------------------------------------------------------------
# Report


def fmt(s: dict | None, digits: int = 0) -> str:
    if not s:
        return "–"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def fmt_ci(m: dict | None) -> str:
    return "–" if not m else f"{m['mean']:+.1f} ± {m['ci95']:.1f}"


def workload_label(group: str, kind: str) -> str:
    if kind == "legacy-token":
        return f"one token {group}"  # runs before issue 19: the same token for every request
    return group


def targets(res: dict) -> list[tuple[str, dict | None, float]]:
    """Issue 19's targets with the measured ratio each names: (what, summary, at most)."""
    out = []
    c = res.get("cpu", {})
    s, meta = c.get("summary", {}), c.get("workloads")
    for kind in ("session", "unique"):
        what, limit = TARGETS[kind]
        for group, row in s.items():
            if group_kind(group, meta) == kind:
                out.append((f"{what} ({group})", row.get("ratio_raw"), limit))
    for group, row in s.items():
        if group_kind(group, meta) == "public":
            out.append((TARGETS["public"][0], row.get("ratio_floor"), TARGETS["public"][1]))
        if group_kind(group, meta) == "receipt":
            out.append((TARGETS["receipt"][0], row.get("receipt_ratio"), TARGETS["receipt"][1]))
    derived = res.get("cold", {}).get("summary", {}).get("derived", {})
    if derived:
        what, limit = TARGETS["cold"]
        out.append((f"{what} (wall time, as the issue's 14.4 vs 9.1 ms)",
                    derived.get("first_verified_ratio_wall"), limit))
        out.append((f"{what} (CPU of the workerd process)", derived.get("first_verified_ratio_cpu"),
                    limit))
        out.append((f"{what}, after the isolate's first request (as the runs before issue 19 "
                    "measured it: their readiness probe reached the Worker first; wall time)",
                    derived.get("verified_after_public_ratio_wall"), limit))
    return out


def report_cpu(c: dict) -> list[str]:
    lines = []
    meta = c.get("workloads")
    s = c["summary"]
    lines.append("")
    lines.append(f"CPU per request in the Worker's workerd process, microseconds: median "
                 f"(min–max) over {c['rounds']} rounds x {c['requests']} requests "
                 f"(warm-up {c.get('warmup', '?')}) [{', '.join(c['accounting'])}]")
    if meta:
        lines.append("")
        for group, m in meta.items():
            lines.append(f"- {group}: {m['describe']}")
    tok = [g for g in s if group_kind(g, meta) in ("unique", "session", "legacy-token")]
    if tok:
        lines.append("")
        lines.append("| workload | attestgate | jose | floor | floor-log | floor-verify "
                     "| attestgate − floor | jose − floor | ratio raw | log line "
                     "| ratio, log line excluded | ratio net | floor-verify / jose "
                     "| (floor-verify + log line) / jose |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for g in tok:
            row = s[g]
            lines.append(
                f"| {workload_label(g, group_kind(g, meta))} | {fmt(row.get('attestgate'))} "
                f"| {fmt(row.get('jose'))} | {fmt(row.get('floor'))} "
                f"| {fmt(row.get('floor-log'))} | {fmt(row.get('floor-verify'))} "
                f"| {fmt(row.get('net_attestgate'))} | {fmt(row.get('net_jose'))} "
                f"| {fmt(row.get('ratio_raw'), 2)} | {fmt(row.get('log_line'))} "
                f"| {fmt(row.get('ratio_raw_ex_log'), 2)} | {fmt(row.get('ratio_net'), 2)} "
                f"| {fmt(row.get('ratio_floor_verify'), 2)} "
                f"| {fmt(row.get('ratio_floor_verify_log'), 2)} |"
            )
    for g in [g for g in s if group_kind(g, meta) == "refusal"]:
        row = s[g]
        lines.append("")
        lines.append("| refusal mix | attestgate | jose | floor (forwards) | floor-log "
                     "| ratio raw | log line | ratio, log line excluded |")
        lines.append("|---|---|---|---|---|---|---|---|")
        lines.append(f"| {g} | {fmt(row.get('attestgate'))} | {fmt(row.get('jose'))} "
                     f"| {fmt(row.get('floor'))} | {fmt(row.get('floor-log'))} "
                     f"| {fmt(row.get('ratio_raw'), 2)} | {fmt(row.get('log_line'))} "
                     f"| {fmt(row.get('ratio_raw_ex_log'), 2)} |")
    for g in [g for g in s if group_kind(g, meta) == "public"]:
        row = s[g]
        lines.append("")
        lines.append("| public route | attestgate | jose | floor | floor-log "
                     "| attestgate / floor | jose / floor | attestgate / floor-log "
                     "| (attestgate − log line) / floor | log line |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        lines.append(f"| {g} | {fmt(row.get('attestgate'))} | {fmt(row.get('jose'))} "
                     f"| {fmt(row.get('floor'))} | {fmt(row.get('floor-log'))} "
                     f"| {fmt(row.get('ratio_floor'), 2)} | {fmt(row.get('jose_floor'), 2)} "
                     f"| {fmt(row.get('ratio_floor_log'), 2)} "
                     f"| {fmt(row.get('ratio_floor_ex_log'), 2)} | {fmt(row.get('log_line'))} |")
    for g in [g for g in s if group_kind(g, meta) == "inject"]:
        row = s[g]
        base = s.get((meta or {}).get(g, {}).get("base_group", ""), {})
        lines.append("")
        lines.append("| injection (issue 14) | attestgate, injected | attestgate, no upstream "
                     "| injected − not (us) | injected / not | mean ± 95% (us) |")
        lines.append("|---|---|---|---|---|---|")
        lines.append(f"| {g} | {fmt(row.get('attestgate'))} | {fmt(base.get('attestgate'))} "
                     f"| {fmt(row.get('inject_us'), 1)} | {fmt(row.get('inject_ratio'), 3)} "
                     f"| {fmt_ci(row.get('inject_us_mean'))} |")
    for g in [g for g in s if group_kind(g, meta) == "deny" and "deny_us" in s[g]]:
        row = s[g]
        base = s.get((meta or {}).get(g, {}).get("base_group", "deny, no check"), {})
        lines.append("")
        lines.append("| deny check (issue 16) | attestgate, fresh view | attestgate, no check "
                     "| with − without (us) | with / without | mean ± 95% (us) |")
        lines.append("|---|---|---|---|---|---|")
        lines.append(f"| {g} | {fmt(row.get('attestgate'))} | {fmt(base.get('attestgate'))} "
                     f"| {fmt(row.get('deny_us'), 1)} | {fmt(row.get('deny_ratio'), 3)} "
                     f"| {fmt_ci(row.get('deny_us_mean'))} |")
    for g in [g for g in s if group_kind(g, meta) == "log"]:
        row = s[g]
        m = (meta or {}).get(g, {})
        variants = m.get("variants", {})
        quiet = s.get(m.get("quiet_group", ""), {})
        lines.append("")
        lines.append(f"Writing the decision line: each Worker answers {ANSWER_PATH} with its line "
                     f"and {QUIET_PATH} without it, in adjacent batches of each round; the cost "
                     "is the difference in the same process (the floor's is the method's noise)")
        lines.append("")
        lines.append("| Worker | what | us/request with the line | without | us per request "
                     "(with − without) | us per line written | with the line − the floor's |")
        lines.append("|---|---|---|---|---|---|---|")
        for name in m.get("names", [n for n in row if n in LOG_VARIANTS or n == "floor"]):
            rate = variants.get(name, {}).get("lines_per_request", 1.0)
            # A sampled variant's figure is per request: divided by its rate, its noise would be
            # multiplied by the same factor.
            per_line = fmt(row.get("log_per_line", {}).get(name), 1) if rate == 1.0 else (
                f"(1 line per {round(1 / rate)} requests)")
            what = variants.get(name, {}).get("what", "no log line" if name == "floor" else "")
            lines.append(f"| {name} | {what} | {fmt(row.get(name))} | {fmt(quiet.get(name))} "
                         f"| {fmt(row.get('log_per_request', {}).get(name), 1)} | {per_line} "
                         f"| {fmt(row.get('log_over_floor', {}).get(name), 1)} |")
    proxy = {g: {n: v for n, v in by.items() if v}
             for g, by in c.get("proxy_per_round_us", {}).items()}
    if any(proxy.values()):
        lines.append("")
        lines.append("wrangler's proxy workerd, not counted above (median us/request): "
                     + "; ".join(f"{g}: " + ", ".join(
                         f"{n} {statistics.median(v):.0f}" for n, v in by.items() if v)
                         for g, by in proxy.items() if by))
    dl = c.get("attestgate_decision_lines")
    if dl and dl["requests"]:
        lines.append("")
        lines.append(f"attestgate wrote {dl['lines']} decision lines for the {dl['requests']} "
                     "requests it served in this phase"
                     + ("" if dl["lines"] >= dl["requests"] else
                        ": NOT one per request, the log line was not on for all of them"))
    row = s.get("none")
    if row and group_kind("none", meta) == "legacy-none":
        lines.append("")
        lines.append(
            f"No verification: attestgate public route {fmt(row.get('attestgate'))}, jose 401 "
            f"without token {fmt(row.get('jose'))}, floor {fmt(row.get('floor'))}, floor-log "
            f"{fmt(row.get('floor-log'))}, floor-verify 401 without token "
            f"{fmt(row.get('floor-verify'))} us/request"
        )
    return lines


def report_cold(res: dict) -> list[str]:
    cold = res["cold"]
    lines = [""]
    if "summary" not in cold:  # --runtime wrangler, and runs before issue 19
        start = "workerd" if res.get("runtime") == "workerd" else "`wrangler dev`"
        lines.append(f"Cold start (median (min–max)): spawn {start} → first answer; first "
                     "verified request on the fresh isolate; then steady")
        lines.append("")
        lines.append("| Worker | ready s | first verified ms | steady ms |")
        lines.append("|---|---|---|---|")
        for name, r in cold.items():
            lines.append(f"| {name} | {fmt(r['ready_s'], 2)} | {fmt(r['first_verified_ms'], 1)} "
                         f"| {fmt(r['steady_ms'], 2)} |")
        return lines
    sm, d = cold["summary"]["scenarios"], cold["summary"]["derived"]
    lines.append(f"Cold start: a fresh workerd process per run, {cold['restarts']} runs per "
                 f"scenario, median (min–max); CPU of the workerd process; {cold['token']} tokens "
                 "never seen before")
    lines.append("")
    lines.append("| Worker | scenario | listening after ms | CPU until then ms | request "
                 "| wall ms | CPU ms | then steady ms |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for key, sc in sm.items():
        name, scenario = key.split(" | ", 1)
        for i, st in enumerate(sc["steps"]):
            head = (f"| {name} | {scenario} | {fmt(sc['listen_ms'], 0)} "
                    f"| {fmt(sc['listen_cpu_ms'], 0)} " if i == 0 else "| | | | ")
            tail = f"| {fmt(sc['steady_ms'], 2)} |" if i == len(sc["steps"]) - 1 else "| |"
            lines.append(f"{head}| {st['label']} | {fmt(st['ms'], 1)} | {fmt(st['cpu_ms'], 1)} "
                         + tail)
    lines.append("")
    for name in ("attestgate", "jose"):
        lines.append(
            f"- {name}: instantiation (first request of a Worker that only loads the bundle, over "
            f"the empty Worker's) {fmt(d.get(f'instantiation_cpu_ms {name}'), 1)} ms CPU, "
            f"{fmt(d.get(f'instantiation_wall_ms {name}'), 1)} ms wall; first public request "
            f"over that {fmt(d.get(f'public_over_instantiation_cpu_ms {name}'), 1)} ms CPU, "
            f"{fmt(d.get(f'public_over_instantiation_wall_ms {name}'), 1)} ms wall")
    lines.append(f"- the floor's first forwarded request over the empty Worker's: "
                 f"{fmt(d.get('floor_forward_over_empty_cpu_ms'), 1)} ms CPU, "
                 f"{fmt(d.get('floor_forward_over_empty_wall_ms'), 1)} ms wall")
    lines.append(f"- first verified request of a fresh isolate, attestgate / jose: wall "
                 f"{fmt(d.get('first_verified_ratio_wall'), 2)}, CPU "
                 f"{fmt(d.get('first_verified_ratio_cpu'), 2)}; after a public request: wall "
                 f"{fmt(d.get('verified_after_public_ratio_wall'), 2)}, CPU "
                 f"{fmt(d.get('verified_after_public_ratio_cpu'), 2)}")
    return lines


def report(res: dict) -> str:
    lines = []
    m = res["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, load before run {m['loadavg']}")
    lines.append(f"workerd: {m['workerd']}; wrangler {m['wrangler']}; jose {m['jose']}")
    if "wasm_bytes" in res:
        lines.append(f"attestgate wasm: {res['wasm_bytes']} bytes")
    if res.get("command"):
        lines.append(f"command: {res['command']}")
    if res.get("phase_s"):
        lines.append("phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in res["phase_s"].items())
                     + (f"; whole run {res['total_s']:.0f} s" if res.get("total_s") else ""))
    t = targets(res)
    if t:
        lines.append("")
        lines.append("Issue 19 targets (each ratio per round or per restart, median (min–max)):")
        lines.append("")
        lines.append("| target | measured | at most | |")
        lines.append("|---|---|---|---|")
        for what, s, limit in t:
            verdict = "–" if not s else "met" if s["median"] <= limit else "not met"
            lines.append(f"| {what} | {fmt(s, 2)} | {limit:.2f} | {verdict} |")
    if "cpu" in res:
        lines += report_cpu(res["cpu"])
    if res.get("stale_retries"):
        lines.append("")
        lines.append("Requests sent again after workerd had closed an idle kept-alive connection "
                     "(before the batch's first answer): " + ", ".join(
                         f"{n} {c}" for n, c in res["stale_retries"].items()))
    if "load" in res:
        lo = res["load"]
        lines.append("")
        lines.append(f"Load ({lo['tool']}, {lo['duration_s']} s per run, median over runs; every "
                     "request of a run carries the same token)")
        for c, rows in lo["table"].items():
            lines.append("")
            lines.append(f"| {c} | req/s | p50 ms | p99 ms | p50 over origin | non-2xx |")
            lines.append("|---|---|---|---|---|---|")
            base = rows.get("origin direct", {}).get("p50_ms") or 0
            for label, r in rows.items():
                lines.append(
                    f"| {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                    f"| {r['p50_ms'] - base:+.2f} | {r['non2xx']} |"
                )
    if "cold" in res:
        lines += report_cold(res)
    return "\n".join(lines)


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(pkg):
        try:
            return json.loads((ROOT / "node_modules" / pkg / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
        "kernel": platform.release(),
        "workerd": version("@cloudflare/workerd-linux-64"),
        "wrangler": version("wrangler"),
        "jose": version("jose"),
        "python": platform.python_version(),
    }


def _terminate(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def main():
    # SIGTERM (e.g. from `timeout`) still runs the clean-up below.
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="CPU rounds (default 7)")
    ap.add_argument("--requests", type=int, default=600,
                    help="requests per Worker per workload per round (default 600)")
    ap.add_argument("--warmup", type=int, default=1500,
                    help="warm-up requests per Worker per token (default 1500: V8 moves a wasm "
                         "function from Liftoff to TurboFan only after it has used its tiering "
                         "budget; after 300 requests much of attestgate still ran as Liftoff code)")
    ap.add_argument("--load-duration", type=int, default=6,
                    help="seconds per load run (default 6; 0: skip)")
    ap.add_argument("--load-rounds", type=int, default=2)
    ap.add_argument("--connections", default="1,8", help="load concurrency levels")
    ap.add_argument("--cold", type=int, default=5,
                    help="cold-start runs per scenario, each a fresh workerd (default 5; 0: skip)")
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds x 200, warm-up 300, short load, 1 restart (a smoke run)")
    ap.add_argument("--workloads", default=",".join(WORKLOAD_KINDS),
                    help=f"CPU workloads to run (default all: {','.join(WORKLOAD_KINDS)})")
    ap.add_argument("--build-dir", type=Path, help="use this attestgate build (made for --port)")
    ap.add_argument("--port", type=int, default=0, help="origin/issuer port (default: free)")
    ap.add_argument("--json", type=Path, help="write all results as JSON here")
    ap.add_argument("--report", type=Path,
                    help="measure nothing: print the report of a saved --json file (summaries "
                         "recomputed from its per-round figures; with --json, saved again)")
    ap.add_argument("--max-minutes", type=float, default=50.0, help="stop after this long")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--runtime", choices=["workerd", "wrangler"], default="workerd",
                    help="workerd: each Worker bundled by wrangler and served by the workerd "
                         "binary directly (default); wrangler: each in its own `wrangler dev`")
    ap.add_argument("--observability", action="store_true",
                    help="keep attestgate's [observability] section (off by default: the other "
                         "Workers have none)")
    args = ap.parse_args()
    if args.report:
        res = json.loads(args.report.read_text())
        if "cpu" in res:
            res["cpu"]["summary"] = cpu_summary(res["cpu"]["per_round_us"],
                                                res["cpu"].get("workloads"))
        if "runs" in res.get("cold", {}):
            res["cold"]["summary"] = cold_summary(res["cold"]["runs"])
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        print(report(res))
        return
    if args.quick:  # what is not set explicitly
        quick = dict(rounds=2, requests=200, warmup=300, load_duration=3, load_rounds=1, cold=1)
        for name, value in quick.items():
            if getattr(args, name) == ap.get_default(name):
                setattr(args, name, value)
    kinds = [k.strip() for k in args.workloads.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in WORKLOAD_KINDS]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOAD_KINDS)}")
    deadline = time.time() + args.max_minutes * 60

    res: dict = {"observability": args.observability, "machine": machine_info(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "command": " ".join([Path(sys.executable).name, *sys.argv]), "phase_s": {}}
    run_started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="attestgate-bench-"))
    servers = LocalServers(port=args.port)
    # http.server writes the head and the body in two sends: without TCP_NODELAY, Nagle and
    # the client's delayed ACK add 40 ms to every origin response.
    servers.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    servers.start()
    workers: dict[str, Worker] = {}
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        servers.issuer.add_key("EdDSA", "bench-eddsa")
        if args.build_dir:
            build_dir = args.build_dir.resolve()
        else:
            log("building attestgate (release) with benches/policies ...")
            build_dir = workdir / "build"
            secs = build_attestgate(fill_policies(servers, workdir / "policies"), build_dir)
            log(f"built in {secs:.0f} s")
            res["phase_s"]["build"] = secs
        phase = time.perf_counter()
        tokens = mint_tokens(servers)
        workloads = make_workloads(servers, kinds, args.warmup + args.rounds * args.requests)
        res["wasm_bytes"] = (build_dir / "index_bg.wasm").stat().st_size

        origin_vars = {"ORIGIN": servers.base}
        Worker_ = DirectWorker if args.runtime == "workerd" else Worker
        res["runtime"] = args.runtime
        attestgate_vars = {"ATTESTGATE_LOG": "decisions", "ATTESTGATE_NONCE_KEY":
                           base64.b64encode(secrets.token_bytes(32)).decode(),
                           "ATTESTGATE_SIGNING_KEY": signing_key_json(),  # issue 14
                           "BENCH_INJECT_KEY": INJECT_KEY}
        workers["attestgate"] = Worker_(
            "attestgate", attestgate_config(workdir, build_dir, args.observability), workdir,
            attestgate_vars if args.runtime == "workerd" else None)
        workers["jose"] = Worker_("jose", jose_config(workdir), workdir, dict(
            origin_vars, ISSUER=servers.issuer.issuer, JWKS_URI=servers.jwks_uri))
        workers["floor"] = Worker_("floor", floor_config(workdir), workdir, origin_vars)
        workers["floor-verify"] = Worker_("floor-verify", floor_config(workdir, verify=True),
                                          workdir, dict(origin_vars, JWKS_URI=servers.jwks_uri))
        workers["floor-log"] = Worker_("floor-log", floor_config(workdir, with_log=True), workdir,
                                      origin_vars)
        if "log" in kinds:
            for name in LOG_NAMES[1:]:
                workers[name] = Worker_(name, floor_config(workdir, variant=name), workdir,
                                        origin_vars)
        for w in workers.values():
            w.start()
            log(f"{w.name}: ready in {w.ready_s:.2f} s on port {w.port} "
                f"(workerd {w.user_pid}, proxy {w.proxy_pid})")
        sanity(workers, tokens, servers, kinds)
        log("sanity: both Workers accept ES256 and EdDSA, forward verified claims, refuse "
            "tampered and missing tokens"
            + (", forward the public route" if "public" in kinds else "")
            + (", refuse every kind of the refusal mix with 401" if "refusal" in kinds else "")
            + ("; each log variant writes its line" if "log" in kinds else ""))
        # The origin keeps every request for the tests; the bench only needs a count.
        servers.recorder.add = lambda entry: None
        res["phase_s"]["set-up"] = time.perf_counter() - phase

        try:
            phase = time.perf_counter()
            lines_before = count_decisions(workers["attestgate"])
            res["cpu"] = dict(rounds=args.rounds, requests=args.requests, warmup=args.warmup)
            res["cpu"].update(cpu_rounds(workers, workloads, args.rounds, args.requests,
                                         args.warmup, deadline))
            # The session target is "with the log line on": attestgate wrote one decision line
            # for every request it served.
            sent = sum(args.warmup + args.rounds * args.requests
                       for wl in workloads if "attestgate" in wl.names)
            time.sleep(0.5)  # the last lines on their way to the log file
            res["cpu"]["attestgate_decision_lines"] = {
                "requests": sent, "lines": count_decisions(workers["attestgate"]) - lines_before}
            res["phase_s"]["cpu"] = time.perf_counter() - phase
            log(f"CPU phase: {res['phase_s']['cpu']:.0f} s; attestgate wrote "
                f"{res['cpu']['attestgate_decision_lines']['lines']} decision lines for {sent} "
                "requests")
            if args.load_duration > 0:
                phase = time.perf_counter()
                conns = [int(c) for c in args.connections.split(",") if c.strip()]
                res["load"] = load_phase(servers, workers, tokens, conns, args.load_duration,
                                         args.load_rounds, deadline)
                res["phase_s"]["load"] = time.perf_counter() - phase
            phase = time.perf_counter()
            if args.cold > 0 and args.runtime == "workerd":
                res["cold"] = cold_phase(servers, workers, workdir, args.cold, deadline)
            elif args.cold > 0:
                res["cold"] = cold_phase_wrangler(workers, tokens, args.cold, deadline)
            res["phase_s"]["cold"] = time.perf_counter() - phase
        except Deadline:
            log(f"deadline of {args.max_minutes} min reached: reporting what was measured")
            res["stopped_at_deadline"] = True
    finally:
        res["stale_retries"] = {n: w.stale_retries for n, w in workers.items()
                                if getattr(w, "stale_retries", 0)}
        for w in workers.values():
            w.stop()
        servers.stop()
        if args.keep:
            log(f"scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    res["total_s"] = time.perf_counter() - run_started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    print(report(res))


if __name__ == "__main__":
    main()
