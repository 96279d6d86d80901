"""Process, port and wrangler-environment helpers shared by the end-to-end tests (conftest.py) and the benchmarks
(benches/workerd.py, benches/build_matrix.py): loopback ports, and stopping a server started in
its own process group (wrangler dev and its workerd children, or workerd) without leaving
anything behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrangler_env(root: Path, log_dir: Path) -> dict[str, str]:
    """The environment for running the repository's wrangler: no build step (the caller built),
    no metrics, error reports or `cf` fetches (loopback only), logs under `log_dir`, and the
    repository's node_modules/.bin first on PATH."""
    env = dict(os.environ)
    env.update(
        SKIP_WORKER_BUILD="1",
        WRANGLER_SEND_METRICS="false",
        WRANGLER_SEND_ERROR_REPORTS="false",
        CLOUDFLARE_CF_FETCH_ENABLED="false",
        WRANGLER_LOG_PATH=str(log_dir),
        PATH=f"{root / 'node_modules' / '.bin'}:{env.get('PATH', '')}",
    )
    return env


def stop_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group of `proc` (started with start_new_session=True), wait up to
    `grace` seconds, then SIGKILL whatever is left of the group."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
