"""End-to-end harness: the real Worker in `wrangler dev` (workerd), a local origin and issuer.

Session set-up, in order:
1. start the local origin + issuer (servers.py) on a free loopback port;
2. fill the test policy templates (tests/e2e/policies) with those URLs into a scratch folder;
3. build the Worker once with ATTESTGATE_POLICY_DIR pointing there (scripts/build.sh);
4. start `wrangler dev` on a free loopback port with a throw-away --persist-to folder, in its
   own process group, and wait until it answers;
5. run the scenarios; always stop everything afterwards (SIGTERM to the group, then SIGKILL).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from procs import free_port, stop_group, wrangler_env  # noqa: E402
from servers import LocalServers  # noqa: E402

NONCE_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
APPROOV_SECRET = secrets.token_bytes(32)
# Two HMAC keys of one provider (test_hardening_routes.py): kid k1 and k2.
HR_SECRETS = {"k1": secrets.token_bytes(32), "k2": secrets.token_bytes(32)}
# The key of the mask routes' hash action (test_mask.py).
MK_MASK_KEY = secrets.token_bytes(32)


class Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.header_list = [(k.lower(), v) for k, v in headers.items()]
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


class Gateway:
    """A running `wrangler dev` with the Worker built for the e2e policies."""

    def __init__(self, workdir: Path, persist: Path, build_dir: Path):
        self.workdir = workdir
        self.persist = persist
        self.build_dir = build_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"wrangler-{self.port}.log"

    def start(self):
        config = (ROOT / "wrangler.toml").read_text()
        config = config.replace('main = "build/index.js"', f'main = "{self.build_dir}/index.js"')
        (self.workdir / "wrangler.toml").write_text(config)
        (self.workdir / ".dev.vars").write_text(
            f'ATTESTGATE_NONCE_KEY="{NONCE_KEY}"\n'
            f'APPROOV_SECRET="{base64.b64encode(APPROOV_SECRET).decode()}"\n'
            f'HR_SECRET="{base64.b64encode(HR_SECRETS["k1"]).decode()}"\n'
            f'HR_SECRET_2026="{base64.b64encode(HR_SECRETS["k2"]).decode()}"\n'
            f'MK_MASK_KEY="{base64.b64encode(MK_MASK_KEY).decode()}"\n'
        )
        env = wrangler_env(ROOT, self.workdir / "wrangler-logs")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(ROOT / "node_modules" / ".bin" / "wrangler"),
                "dev",
                "--config", str(self.workdir / "wrangler.toml"),
                "--ip", "127.0.0.1",
                "--port", str(self.port),
                "--inspector-port", str(free_port()),
                "--persist-to", str(self.persist),
                "--show-interactive-dev-session=false",
                "--log-level", "log",
            ],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wrangler dev exited: {self.log_path.read_text()[-4000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                # The port is open; wait for the Worker itself to answer.
                self.request("GET", "/__attestgate_readiness_probe")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"wrangler dev did not become ready: {self.log_path.read_text()[-4000:]}")

    def stop(self):
        if self.proc is None:
            return
        stop_group(self.proc)
        self.proc = None
        self.log.close()

    def restart(self):
        self.stop()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        return self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, headers=None, body: bytes | None = None) -> Response:
        """Send one request. `headers` may be a dict or a list of pairs (for duplicates)."""
        pairs = headers.items() if isinstance(headers, dict) else (headers or [])
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in pairs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, dict(resp.getheaders()), data)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def servers():
    s = LocalServers().start()
    s.issuer.add_key("ES256", "k-es256")
    s.issuer.add_key("EdDSA", "k-eddsa")
    s.issuer.add_key("RS256", "k-rs256")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="attestgate-e2e-"))
    yield path
    if os.environ.get("ATTESTGATE_KEEP_E2E") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def built(servers, workdir):
    """Build the Worker once with the e2e policies compiled in; returns the build folder."""
    policy_dir = workdir / "policies"
    policy_dir.mkdir()
    for template in sorted((HERE / "policies").glob("*.toml")):
        text = template.read_text()
        text = text.replace("{{ORIGIN}}", servers.base)
        text = text.replace("{{ISSUER}}", servers.issuer.issuer)
        text = text.replace("{{JWKS_URI}}", servers.jwks_uri)
        text = text.replace("{{BASE}}", servers.base)
        # A port nothing listens on: an origin that refuses connections.
        text = text.replace("{{DEAD_ORIGIN}}", f"http://127.0.0.1:{free_port()}")
        (policy_dir / template.name).write_text(text)
    # ATTESTGATE_SELFTEST=1: compile in the test-only WebCrypto self-test endpoint
    # (src/edge/selftest.rs, test_webcrypto_vectors.py). Never set for a deployable build.
    env = dict(os.environ, ATTESTGATE_POLICY_DIR=str(policy_dir), ATTESTGATE_SELFTEST="1")
    started = time.time()
    build_dir = workdir / "build"
    # Into the scratch folder: the test build (self-test endpoint, test policies) never lands in
    # the repository's build/, which `wrangler dev`/`deploy` use.
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build.sh"), "--out-dir", str(build_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        pytest.fail("worker build failed:\n" + result.stdout.decode(errors="replace")[-6000:])
    print(f"\nworker built in {time.time() - started:.1f}s", file=sys.stderr)
    return build_dir


@pytest.fixture(scope="session")
def gateway(built, workdir):
    persist = workdir / "persist"
    persist.mkdir(exist_ok=True)
    gw = Gateway(workdir, persist, built).start()
    yield gw
    gw.stop()


@pytest.fixture
def origin(servers):
    """The origin's request log; `origin.since()` returns what arrived after the fixture started."""

    class View:
        def __init__(self):
            self.mark = servers.recorder.count()

        def since(self):
            return servers.recorder.snapshot()[self.mark:]

    return View()


@pytest.fixture
def approov_secret():
    return APPROOV_SECRET


@pytest.fixture
def hr_secrets():
    return HR_SECRETS


@pytest.fixture
def mk_mask_key():
    return MK_MASK_KEY
