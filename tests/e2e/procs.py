"""Process and port helpers shared by the end-to-end tests (conftest.py) and the benchmarks
(benches/workerd.py, benches/build_matrix.py): loopback ports, and stopping a server started in
its own process group (wrangler dev and its workerd children, or workerd) without leaving
anything behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
