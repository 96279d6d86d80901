#!/usr/bin/env python3
"""attestgate vs a `jose` Worker, both in workerd (`wrangler dev`), on loopback.

    .venv/bin/python benches/workerd.py                # build, CPU rounds, load, cold start
    .venv/bin/python benches/workerd.py --quick        # a short smoke run (numbers are rough)
    .venv/bin/python benches/workerd.py --help

What it does (docs/performance.md explains the method and how to read the figures):

1. Starts the local origin + JWKS issuer of the end-to-end tests (tests/e2e/servers.py) and mints
   one ES256 and one EdDSA token with joserfc (scope orders:read, act.sub, typ at+jwt).
2. Builds attestgate (release, scripts/build.sh) with the bench policy folder benches/policies/
   (its {{ORIGIN}}/{{ISSUER}}/{{JWKS_URI}} filled in), unless --build-dir points at a build made
   for the same --port.
3. Starts three Workers, each in its own `wrangler dev` (own workerd, loopback, --persist-to in a
   temp folder, own process group):
     attestgate  the build above (route orders-read);
     jose        benches/jose-worker (the same checks with the `jose` library);
     floor       a pass-through Worker that forwards to the same origin and verifies nothing.
   Checks that both verifying Workers accept both tokens (200, x-verified-* headers at the
   origin) and refuse a tampered one (401).
4. CPU: for each round and each token, drives N requests with the same token to each Worker,
   interleaved one by one (A, B, floor, A, B, floor, ...), and reads the CPU time (user+system)
   of each Worker's workerd process before and after. Net CPU = Worker - floor (the floor is
   the runtime's own cost of taking a request and making the origin subrequest, which both
   verifying Workers also pay). Reports median and spread over the rounds, and attestgate/jose.
5. Load: wrk (if installed; `apt-get install wrk`) against the origin directly and through each
   Worker, at 1 and at 8 connections: requests per second, p50 and p99 latency.
6. Cold start: restarts attestgate and jose a few times and measures the time from spawning
   `wrangler dev` to the first answer, and the latency of the first verified request on the
   fresh isolate (JWKS fetch, key import and first-use compilation included).

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
AUDIENCE = "https://api.example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")

FLOOR_JS = """\
// Benchmark floor: forwards every request to the origin and verifies nothing.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    /*LOG*/
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

# The floor plus one console.log line shaped like attestgate's decision log (same fields, about
# the same length): measures what writing one log line costs in this runtime.
# (Until 2026-11-23 FLOOR_JS had no /*LOG*/ placeholder, so floor-log was the floor itself and
# the log line looked free; it is not, see docs/performance.md.)
LOG_LINE = (
    "console.log(JSON.stringify({attestgate: 'decision', request_id: crypto.randomUUID(), "
    "method: request.method, path: url.pathname, route: 'orders-read', verdict: 'allow', "
    "status: 200, provider: undefined, issuer: [env.ORIGIN + '/demo-issuer'], "
    "subject: 'user:alice', agent: ['agent:planner'], jti: ['q3Rk1xPzW8mN0aBc'], "
    "latency_ms: 1}));"
)


class Deadline(Exception):
    pass


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# CPU accounting of a process (all its threads)


def proc_cpu(pid: int) -> tuple[int, int | None, frozenset]:
    """(utime+stime in clock ticks, sum of the threads' schedstat run time in ns, thread ids).

    /proc/<pid>/stat counts every thread the process ever had, at 1/CLK_TCK resolution.
    /proc/<pid>/task/*/schedstat gives nanoseconds but only for live threads, so it is used
    only when the set of threads did not change between the two samples.
    """
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])
    ns = 0
    tids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns += int(f.read().split()[0])
            tids.append(tid)
    except (FileNotFoundError, ProcessLookupError):
        return ticks, None, frozenset()
    return ticks, ns, frozenset(tids)


def cpu_delta_ns(before, after) -> tuple[float, str]:
    if before[1] is not None and after[1] is not None and before[2] == after[2]:
        return float(after[1] - before[1]), "schedstat"
    return (after[0] - before[0]) * 1e9 / CLK_TCK, "stat"


# ---------------------------------------------------------------------------------------------
# A Worker in `wrangler dev`


class Worker:
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

    def start(self, timeout: float = 90.0) -> "Worker":
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
            "--log-level", "warn",
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

    def wait_ready(self, started: float, timeout: float, what: str):
        """Until the Worker itself answers (any status: no route / no token, no origin
        involved); records the time from `started`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: {what} exited:\n{self.tail()}")
            try:
                self.get("/__bench_readiness_probe", {}, timeout=5)
                self.ready_s = time.perf_counter() - started
                return
            except (OSError, http.client.HTTPException):
                self.close()
                time.sleep(0.05)
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

    def get(self, path: str, headers: dict, timeout: float = 30) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            self.conn.request("GET", path, headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
            if resp.getheader("connection", "").lower() == "close":
                self.close()
            return resp.status, body
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

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.bundle: Path | None = None
        self.log_path = self.workdir / f"workerd-{self.name}.log"

    def _bundle(self) -> Path:
        out = self.workdir / f"bundle-{self.name}"
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

    def _config(self, bundle: Path) -> Path:
        modules = []
        # embed paths are relative to the config file (an absolute path is looked up in the
        # import roots instead).
        for f in sorted(p.relative_to(self.workdir) for p in bundle.iterdir()):
            if f.name == "index.js":
                modules.insert(0, f'(name = "index.js", esModule = embed "{f}")')
            elif f.suffix == ".js":
                modules.append(f'(name = "{f.name}", esModule = embed "{f}")')
            elif f.suffix == ".wasm":
                modules.append(f'(name = "{f.name}", wasm = embed "{f}")')
        bindings = [f'(name = "{k}", text = {json.dumps(v)})' for k, v in self.vars.items()]
        extra = ""
        services = ""
        if "durable_objects" in self.config.read_text():
            persist = self.workdir / f"persist-{self.name}"
            persist.mkdir(exist_ok=True)
            bindings.append('(name = "NONCE_STORE", durableObjectNamespace = "NonceStore")')
            extra = (',\n  durableObjectNamespaces = [(className = "NonceStore", '
                     'uniqueKey = "attestgate-NonceStore", enableSql = true)],\n'
                     '  durableObjectStorage = (localDisk = "disk")')
            services = f',\n    (name = "disk", disk = (path = "{persist}", writable = true))'
        text = f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "private", "local"])){services}
  ],
  sockets = [(name = "http", address = "127.0.0.1:{self.port}", http = (), service = "main")]
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

    def start(self, timeout: float = 90.0) -> "Worker":
        self.bundle = self._bundle()
        self.port = free_port()
        config = self._config(self.bundle)
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(WORKERD), "serve", str(config)],
            cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(started, timeout, "workerd")
        self.user_pid = self.proc.pid
        self.proxy_pid = 0
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
    (d / ".dev.vars").write_text(f'ATTESTGATE_NONCE_KEY="{nonce_key}"\n')
    return d / "wrangler.toml"


def jose_config(workdir: Path) -> Path:
    # Bundled by wrangler from benches/jose-worker; `jose` resolves from the repo's node_modules.
    return ROOT / "benches" / "jose-worker" / "wrangler.toml"


def floor_config(workdir: Path, with_log: bool = False, verify: bool = False) -> Path:
    name = "floor-verify" if verify else "floor-log" if with_log else "floor"
    d = workdir / name
    d.mkdir(exist_ok=True)
    js = FLOOR_VERIFY_JS if verify else FLOOR_JS.replace("/*LOG*/", LOG_LINE if with_log else "")
    (d / "floor.js").write_text(js)
    (d / "wrangler.toml").write_text(
        f'name = "bench-{name}"\nmain = "floor.js"\ncompatibility_date = "2026-11-17"\n'
    )
    return d / "wrangler.toml"


def mint_tokens(servers: LocalServers) -> dict[str, str]:
    now = int(time.time())
    common = dict(scope="orders:read", act={"sub": "agent:planner"}, iat=now, exp=now + 3500)
    return {
        "ES256": servers.issuer.mint("bench-es256", **common),
        "EdDSA": servers.issuer.mint("bench-eddsa", **common),
    }


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([head, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])


def sanity(workers: dict[str, Worker], tokens: dict[str, str]):
    """Both verifying Workers accept both tokens and forward verified claims; they refuse a
    tampered token and a missing one. The floor forwards."""
    for name in ("attestgate", "jose"):
        w = workers[name]
        for alg, token in tokens.items():
            status, body = w.get(ORDER_PATH, {"authorization": f"Bearer {token}"})
            if status != 200:
                raise RuntimeError(f"{name} {alg}: expected 200, got {status} {body[:300]!r}")
            verified = json.loads(body).get("verified", {})
            if verified.get("x-verified-user") != "user:alice" or verified.get(
                "x-verified-agent"
            ) != "agent:planner":
                raise RuntimeError(f"{name} {alg}: origin saw {verified}")
            status, _ = w.get(ORDER_PATH, {"authorization": f"Bearer {tamper(token)}"})
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
        written = '"attestgate":"decision"' in workers[name].log_path.read_text(errors="replace")
        if written != wants:
            raise RuntimeError(f"{name}: decision line {'missing' if wants else 'unexpected'}")
    fv = workers["floor-verify"]
    for alg, token in tokens.items():
        status, body = fv.get(ORDER_PATH, {"authorization": f"Bearer {token}"})
        if status != 200:
            raise RuntimeError(f"floor-verify {alg}: expected 200, got {status} {body[:200]!r}")
        status, _ = fv.get(ORDER_PATH, {"authorization": f"Bearer {tamper(token)}"})
        if status != 401:
            raise RuntimeError(f"floor-verify {alg}: tampered token got {status}")


# ---------------------------------------------------------------------------------------------
# 1. CPU per request


def summary(values: list[float]) -> dict:
    values = sorted(values)
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


def interleaved_batch(plan, n: int) -> Batch:
    """N requests to each `(label, worker, path, headers, expected status)` of `plan`,
    interleaved one by one in the plan's order, so drift and background load hit all alike.
    Used by cpu_rounds and by benches/ab.py."""
    def cpu(w):
        return proc_cpu(w.user_pid), proc_cpu(w.proxy_pid) if w.proxy_pid else None

    before = {label: cpu(w) for label, w, *_ in plan}
    batch = Batch()
    for _ in range(n):
        for _label, w, path, headers, want in plan:
            status, _ = w.get(path, headers)
            batch.unexpected += status != want
    after = {label: cpu(w) for label, w, *_ in plan}
    for label, *_ in plan:
        ns, how = cpu_delta_ns(before[label][0], after[label][0])
        batch.accounting.add(how)
        batch.user_us[label] = ns / n / 1000
        if before[label][1] is not None:
            pns, _ = cpu_delta_ns(before[label][1], after[label][1])
            batch.proxy_us[label] = pns / n / 1000
    return batch


def cpu_rounds(workers, tokens, rounds, n, warmup, deadline) -> dict:
    """Per round and token: N requests to each Worker, interleaved one by one. Returns the
    per-round CPU microseconds per request of each Worker's workerd (user Worker process, and
    wrangler's proxy process for reference)."""
    groups = {alg: tokens[alg] for alg in tokens}
    groups["none"] = None  # no verification: attestgate's public route, jose without a token
    names = ["attestgate", "jose", "floor", "floor-log", "floor-verify"]

    def target(name, group):
        if group == "none":
            if name == "attestgate":
                return "/healthz", {}
            if name == "jose":
                return ORDER_PATH, {}  # 401 before any verification
            return ORDER_PATH, {}
        return ORDER_PATH, {"authorization": f"Bearer {groups[group]}"}

    expected = {
        ("attestgate", "none"): 200,
        ("jose", "none"): 401,
        ("floor-verify", "none"): 401,
    }

    log(f"warm-up: {warmup} requests per Worker and token")
    for group in groups:
        for _ in range(warmup):
            for name in names:
                path, headers = target(name, group)
                workers[name].get(path, headers)

    results: dict = {g: {name: [] for name in names} for g in groups}
    proxy: dict = {g: {name: [] for name in names} for g in groups}
    methods = set()
    for r in range(rounds):
        for group in groups:
            if time.time() > deadline:
                raise Deadline()
            order = names[r % len(names):] + names[: r % len(names)]
            batch = interleaved_batch(
                [(name, workers[name], *target(name, group), expected.get((name, group), 200))
                 for name in order], n)
            if batch.unexpected:
                raise RuntimeError(f"round {r} {group}: {batch.unexpected} unexpected statuses")
            methods.update(batch.accounting)
            for name in order:
                results[group][name].append(batch.user_us[name])
                if name in batch.proxy_us:
                    proxy[group][name].append(batch.proxy_us[name])
        line = "  ".join(
            f"{g}: att {results[g]['attestgate'][-1]:.0f} jose {results[g]['jose'][-1]:.0f} "
            f"floor {results[g]['floor'][-1]:.0f} floor-log {results[g]['floor-log'][-1]:.0f} "
            f"floor-verify {results[g]['floor-verify'][-1]:.0f}"
            for g in groups
        )
        log(f"round {r + 1}/{rounds} (us CPU/request)  {line}")

    out = {"per_round_us": results, "proxy_per_round_us": proxy, "accounting": sorted(methods)}
    out["summary"] = cpu_summary(results)
    return out


def cpu_summary(results: dict) -> dict:
    """Medians and ratios from the per-round figures (also for `--report` on a saved JSON)."""
    names = ["attestgate", "jose", "floor", "floor-log", "floor-verify"]
    table = {}
    for group in results:
        row = {name: summary(results[group][name]) for name in names}
        if group != "none":
            net_a = [a - f for a, f in zip(results[group]["attestgate"], results[group]["floor"])]
            net_j = [j - f for j, f in zip(results[group]["jose"], results[group]["floor"])]
            row["net_attestgate"] = summary(net_a)
            row["net_jose"] = summary(net_j)
            row["ratio_net"] = summary([a / j for a, j in zip(net_a, net_j) if j > 0])
            row["ratio_raw"] = summary(
                [a / j for a, j in zip(results[group]["attestgate"], results[group]["jose"])]
            )
            # attestgate writes the decision line SPEC §5 requires; the jose Worker writes none.
            # The same line's cost, measured in this round as floor-log − floor, taken off
            # attestgate: the comparison of the checks alone.
            row["log_line"] = summary([fl - f for fl, f in zip(results[group]["floor-log"],
                                                               results[group]["floor"])])
            row["ratio_raw_ex_log"] = summary(
                [(a - (fl - f)) / j for a, fl, f, j in zip(
                    results[group]["attestgate"], results[group]["floor-log"],
                    results[group]["floor"], results[group]["jose"])]
            )
            # The lower bound (floor + one WebCrypto verify) relative to jose: the best ratio any
            # WebCrypto-based verifier could reach here.
            row["ratio_floor_verify"] = summary(
                [v / j for v, j in zip(results[group]["floor-verify"], results[group]["jose"])]
            )
            # ... and the same bound for a verifier that also writes one log line per request,
            # as SPEC §5 requires of attestgate: floor-verify + (floor-log − floor), over jose.
            row["ratio_floor_verify_log"] = summary(
                [(v + fl - f) / j for v, fl, f, j in zip(
                    results[group]["floor-verify"], results[group]["floor-log"],
                    results[group]["floor"], results[group]["jose"])]
            )
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


def cold_phase(workers, tokens, restarts, deadline) -> dict:
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
            status, _ = w.get(ORDER_PATH, {"authorization": f"Bearer {tokens['ES256']}"})
            first = (time.perf_counter() - t) * 1000
            lat = []
            for _ in range(20):
                t = time.perf_counter()
                w.get(ORDER_PATH, {"authorization": f"Bearer {tokens['ES256']}"})
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


def fmt(s: dict, digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def report(res: dict) -> str:
    lines = []
    m = res["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, load before run {m['loadavg']}")
    lines.append(f"workerd: {m['workerd']}; wrangler {m['wrangler']}; jose {m['jose']}")
    if "wasm_bytes" in res:
        lines.append(f"attestgate wasm: {res['wasm_bytes']} bytes")
    if "cpu" in res:
        c = res["cpu"]
        lines.append("")
        lines.append(f"CPU per request in the Worker's workerd process, microseconds: median "
                     f"(min–max) over {c['rounds']} rounds x {c['requests']} requests "
                     f"[{', '.join(c['accounting'])}]")
        lines.append("")
        lines.append("| token | attestgate | jose | floor | floor-log | floor-verify "
                     "| attestgate − floor | jose − floor | ratio raw | log line "
                     "| ratio, log line excluded | ratio net | floor-verify / jose "
                     "| (floor-verify + log line) / jose |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for g in ("ES256", "EdDSA"):
            row = c["summary"].get(g)
            if not row:
                continue
            lines.append(
                f"| {g} | {fmt(row['attestgate'])} | {fmt(row['jose'])} | {fmt(row['floor'])} "
                f"| {fmt(row['floor-log'])} | {fmt(row['floor-verify'])} "
                f"| {fmt(row['net_attestgate'])} | {fmt(row['net_jose'])} "
                f"| {fmt(row['ratio_raw'], 2)} | {fmt(row['log_line'])} "
                f"| {fmt(row['ratio_raw_ex_log'], 2)} | {fmt(row['ratio_net'], 2)} "
                f"| {fmt(row['ratio_floor_verify'], 2)} "
                f"| {fmt(row.get('ratio_floor_verify_log'), 2)} |"
            )
        proxy = {g: {n: v for n, v in by.items() if v}
                 for g, by in c.get("proxy_per_round_us", {}).items()}
        if any(proxy.values()):
            lines.append("")
            lines.append("wrangler's proxy workerd, not counted above (median us/request): " + "; ".join(
                f"{g}: " + ", ".join(f"{n} {statistics.median(v):.0f}" for n, v in by.items() if v)
                for g, by in proxy.items()))
        row = c["summary"].get("none")
        if row:
            lines.append("")
            lines.append(
                f"No verification: attestgate public route {fmt(row['attestgate'])}, jose 401 "
                f"without token {fmt(row['jose'])}, floor {fmt(row['floor'])}, floor-log "
                f"{fmt(row['floor-log'])}, floor-verify 401 without token "
                f"{fmt(row['floor-verify'])} us/request"
            )
    if "load" in res:
        lo = res["load"]
        lines.append("")
        lines.append(f"Load ({lo['tool']}, {lo['duration_s']} s per run, median over runs)")
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
        lines.append("")
        start = "workerd" if res.get("runtime") == "workerd" else "`wrangler dev`"
        lines.append(f"Cold start (median (min–max)): spawn {start} → first answer; first "
                     "verified request on the fresh isolate; then steady")
        lines.append("")
        lines.append("| Worker | ready s | first verified ms | steady ms |")
        lines.append("|---|---|---|---|")
        for name, r in res["cold"].items():
            lines.append(f"| {name} | {fmt(r['ready_s'], 2)} | {fmt(r['first_verified_ms'], 1)} "
                         f"| {fmt(r['steady_ms'], 2)} |")
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
    ap.add_argument("--requests", type=int, default=1000, help="requests per Worker per token per round")
    ap.add_argument("--warmup", type=int, default=1500,
                    help="warm-up requests per Worker per token (default 1500: V8 moves a wasm "
                         "function from Liftoff to TurboFan only after it has used its tiering "
                         "budget; after 300 requests much of attestgate still ran as Liftoff code)")
    ap.add_argument("--load-duration", type=int, default=10, help="seconds per load run (0: skip)")
    ap.add_argument("--load-rounds", type=int, default=2)
    ap.add_argument("--connections", default="1,8", help="load concurrency levels")
    ap.add_argument("--cold", type=int, default=3, help="cold-start restarts per Worker (0: skip)")
    ap.add_argument("--quick", action="store_true", help="2 rounds x 200, short load, 1 restart")
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
            res["cpu"]["summary"] = cpu_summary(res["cpu"]["per_round_us"])
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        print(report(res))
        return
    if args.quick:
        args.rounds, args.requests, args.warmup = 2, 200, 300
        args.load_duration, args.load_rounds, args.cold = 3, 1, 1
    deadline = time.time() + args.max_minutes * 60

    res: dict = {"observability": args.observability, "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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
        tokens = mint_tokens(servers)

        if args.build_dir:
            build_dir = args.build_dir.resolve()
        else:
            log("building attestgate (release) with benches/policies ...")
            build_dir = workdir / "build"
            secs = build_attestgate(fill_policies(servers, workdir / "policies"), build_dir)
            log(f"built in {secs:.0f} s")
        res["wasm_bytes"] = (build_dir / "index_bg.wasm").stat().st_size

        origin_vars = {"ORIGIN": servers.base}
        Worker_ = DirectWorker if args.runtime == "workerd" else Worker
        res["runtime"] = args.runtime
        attestgate_vars = {"ATTESTGATE_LOG": "decisions", "ATTESTGATE_NONCE_KEY":
                           base64.b64encode(secrets.token_bytes(32)).decode()}
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
        for w in workers.values():
            w.start()
            log(f"{w.name}: ready in {w.ready_s:.2f} s on port {w.port} "
                f"(workerd {w.user_pid}, proxy {w.proxy_pid})")
        sanity(workers, tokens)
        log("sanity: both Workers accept ES256 and EdDSA, forward verified claims, refuse "
            "tampered and missing tokens")
        # The origin keeps every request for the tests; the bench only needs a count.
        servers.recorder.add = lambda entry: None

        try:
            res["cpu"] = dict(rounds=args.rounds, requests=args.requests, warmup=args.warmup)
            res["cpu"].update(cpu_rounds(workers, tokens, args.rounds, args.requests,
                                         args.warmup, deadline))
            if args.load_duration > 0:
                conns = [int(c) for c in args.connections.split(",") if c.strip()]
                res["load"] = load_phase(servers, workers, tokens, conns, args.load_duration,
                                         args.load_rounds, deadline)
            if args.cold > 0:
                res["cold"] = cold_phase(workers, tokens, args.cold, deadline)
        except Deadline:
            log(f"deadline of {args.max_minutes} min reached: reporting what was measured")
            res["stopped_at_deadline"] = True
    finally:
        for w in workers.values():
            w.stop()
        servers.stop()
        if args.keep:
            log(f"scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    print(report(res))


if __name__ == "__main__":
    main()
