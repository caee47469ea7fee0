"""up.json and stopping what it records: real processes, signalled by PID, never a reused one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from jellybean.agents.upstate import (RecordedProcess, UpRecorder, UpState, read_state, record, running_up, stop,
                                      write_state)
from jellybean.errors import JellyBeanError

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# Ignores SIGTERM: only SIGKILL stops it. It says so once the handler is in place.
STUBBORN = [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                  "print('ready', flush=True); time.sleep(120)"]


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(argv, **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _state(tmp_path, *procs: RecordedProcess) -> UpState:
    return UpState(workdir=str(tmp_path), broker_url="mqtt://127.0.0.1:1", started_at=time.time(), processes=procs)


def _reaped(p: subprocess.Popen, timeout: float = 30) -> int:
    """Our children stay zombies until we reap them; `stop` counts a zombie as gone."""
    return p.wait(timeout)


def test_a_process_is_recorded_with_its_start_time_and_a_reused_pid_is_never_signalled(tmp_path, spawn):
    p = spawn(SLEEPER)
    mine = record("agent", "edge", p.pid)
    assert mine is not None and mine.alive()
    # The same PID with another start time: a process the system gave this PID later.
    other = mine.model_copy(update={"start_ticks": mine.start_ticks - 1})
    assert not other.alive()
    result = stop(_state(tmp_path, other), timeout=1)
    assert result.already_gone == [other] and result.stale
    assert p.poll() is None   # untouched


def test_stop_asks_first_and_kills_only_after_the_timeout(tmp_path, spawn):
    polite = spawn(SLEEPER)
    stubborn = spawn(STUBBORN, stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"
    a, b = record("agent", "polite", polite.pid), record("agent", "stubborn", stubborn.pid)
    started = time.monotonic()
    # `up` is gone (not recorded here): what it left is asked to stop directly.
    result = stop(_state(tmp_path, a, b), timeout=3)
    assert time.monotonic() - started >= 3
    assert result.stopped == [a] and result.killed == [b] and result.remaining == []
    assert _reaped(polite) == -15 and _reaped(stubborn) == -9


def test_the_state_file_round_trips_and_a_missing_or_broken_one_is_a_clear_error(tmp_path):
    with pytest.raises(JellyBeanError, match="no `jellybean up` is recorded in"):
        read_state(tmp_path)
    state = _state(tmp_path, record("up", "up", os.getpid()))
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    (tmp_path / "up.json").write_text("{not json")
    with pytest.raises(JellyBeanError, match="not a state file of `jellybean up`.*delete it"):
        read_state(tmp_path)


def test_an_up_refuses_a_workdir_another_running_up_owns_and_takes_over_a_stale_one(tmp_path, spawn):
    other = spawn(SLEEPER)
    write_state(tmp_path, _state(tmp_path, record("up", "up", other.pid)))
    with pytest.raises(JellyBeanError, match=f"already runs from {tmp_path}.*jellybean down --workdir"):
        UpRecorder(tmp_path)
    other.kill()
    _reaped(other)
    assert running_up(tmp_path) is None
    recorder = UpRecorder(tmp_path)
    agent = spawn(SLEEPER)
    recorder.update(plan="p", broker_url="mqtt://127.0.0.1:9", agents={"edge": agent.pid})
    state = read_state(tmp_path)
    assert [(p.role, p.name, p.pid) for p in state.processes] == [("up", "up", os.getpid()),
                                                                   ("agent", "edge", agent.pid)]
    assert state.broker_url == "mqtt://127.0.0.1:9" and running_up(tmp_path) == state
    recorder.close()
    assert not (tmp_path / "up.json").exists()
