"""Stopping the child processes we start (Mosquitto, agents): ask, wait, then insist."""

from __future__ import annotations

import subprocess
from typing import Iterable


def stop_processes(procs: Iterable[subprocess.Popen], timeout: float = 10.0) -> None:
    """SIGTERM every running process first (so they wind down together), then wait for each and
    SIGKILL what is still running after `timeout` seconds."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    stop_processes([proc], timeout)


# An agent started with this set to its parent's PID stops once that parent is gone (`zoo profile`'s
# agents: a SIGTERM can interrupt the parent while Popen is still starting one).
STOP_WITH_PARENT_ENV = "JELLYBEAN_STOP_WITH_PARENT"
