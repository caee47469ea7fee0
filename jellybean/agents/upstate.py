"""The state file of `jellybean up` (WORKDIR/up.json), and stopping what it records (`jellybean down`).

`up` writes which processes it started: itself, the broker (when Mosquitto runs as a child) and
each agent, each with its PID and its start time (field 22 of /proc/PID/stat, clock ticks since
boot). A PID names the same process only while the start time matches, so a PID the system has
given to another process since is never signalled. `up` removes the file when it exits.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from jellybean.errors import JellyBeanError

STATE_FILE = "up.json"
POLL_S = 0.1


class RecordedProcess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["up", "broker", "agent"]
    name: str
    pid: int
    start_ticks: int

    @property
    def label(self) -> str:
        return self.role if self.role == self.name else f"{self.role} {self.name}"

    def alive(self) -> bool:
        """Running, and the very process recorded (not a later one with its PID)."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] not in ("Z", "X")


class UpState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1
    workdir: str
    broker_url: str
    plan: str = ""
    started_at: float
    processes: tuple[RecordedProcess, ...] = ()
    # `up --isolate`: the run id of its site namespaces (jb-<id>-s<N>), for `down` to remove what
    # an `up` that was killed left behind.
    netns_run: str = ""

    @property
    def up(self) -> RecordedProcess | None:
        return next((p for p in self.processes if p.role == "up"), None)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of /proc/PID/stat, or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()   # the command name may hold spaces and ')'
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def record(role: str, name: str, pid: int | None) -> RecordedProcess | None:
    """A process to record, with its start time; None when it is not running (or has no PID)."""
    if pid is None:
        return None
    stat = _stat(pid)
    if stat is None:
        return None
    return RecordedProcess(role=role, name=name, pid=pid, start_ticks=stat[1])


def state_path(workdir: Path) -> Path:
    return Path(workdir) / STATE_FILE


def write_state(workdir: Path, state: UpState) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path = state_path(workdir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def remove_state(workdir: Path, pid: int | None = None) -> None:
    """Remove the state file; with `pid`, only when that process wrote it (another `up` may own it now)."""
    path = state_path(workdir)
    if pid is not None:
        try:
            recorded = read_state(workdir).up
        except JellyBeanError:
            return
        if recorded is None or recorded.pid != pid:
            return
    path.unlink(missing_ok=True)


def read_state(workdir: Path) -> UpState:
    path = state_path(workdir)
    if not path.is_file():
        raise JellyBeanError(
            f"no `jellybean up` is recorded in {Path(workdir)} ({path} does not exist); give the --workdir that `up` "
            "ran with (it prints `jellybean down --workdir DIR` when it starts)")
    try:
        return UpState.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        raise JellyBeanError(f"{path}: not a state file of `jellybean up` ({first}); if nothing runs from "
                             f"{Path(workdir)} any more, delete it") from None


def running_up(workdir: Path) -> UpState | None:
    """The state of an `up` that still runs from `workdir`, or None (no file, a stale or unreadable one)."""
    try:
        state = read_state(workdir)
    except JellyBeanError:
        return None
    up = state.up
    return state if up is not None and up.alive() else None


@dataclass
class Stopped:
    """What `stop` did to each recorded process."""

    already_gone: list[RecordedProcess] = field(default_factory=list)
    stopped: list[RecordedProcess] = field(default_factory=list)   # exited after SIGTERM
    killed: list[RecordedProcess] = field(default_factory=list)    # SIGKILLed after the timeout
    remaining: list[RecordedProcess] = field(default_factory=list)  # still there even after SIGKILL

    @property
    def stale(self) -> bool:
        return not (self.stopped or self.killed or self.remaining)


def _signal(p: RecordedProcess, sig: int) -> None:
    if not p.alive():   # checked right before: never a PID reused since
        return
    try:
        os.kill(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(procs: list[RecordedProcess], deadline: float,
               progress: Callable[[list[RecordedProcess]], None] | None = None) -> list[RecordedProcess]:
    left = [p for p in procs if p.alive()]
    while left and time.monotonic() < deadline:
        if progress:
            progress(left)
        time.sleep(POLL_S)
        left = [p for p in left if p.alive()]
    return left


def stop(state: UpState, timeout: float = 30.0,
         progress: Callable[[list[RecordedProcess]], None] | None = None) -> Stopped:
    """SIGTERM `up` (it stops its agents and broker, then exits) and wait until every recorded
    process has exited; if `up` is gone already, SIGTERM what it left. After `timeout` seconds,
    SIGKILL what is left, by PID, each checked against its start time first."""
    result = Stopped()
    alive = [p for p in state.processes if p.alive()]
    result.already_gone = [p for p in state.processes if p not in alive]
    if not alive:
        return result
    up = state.up
    first = [up] if up in alive else alive   # `up` stops its children itself; orphans need asking
    for p in first:
        _signal(p, signal.SIGTERM)
    left = _wait_gone(alive, time.monotonic() + timeout, progress)
    for p in left:
        _signal(p, signal.SIGKILL)
    remaining = _wait_gone(left, time.monotonic() + 5.0)
    result.stopped = [p for p in alive if p not in left]
    result.killed = [p for p in left if p not in remaining]
    result.remaining = remaining
    return result


class UpRecorder:
    """The state file of one running `up`: claimed at start (refused while another `up` runs from
    the same directory), rewritten as the broker and agents start, removed by `close`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        other = running_up(self.workdir)
        if other is not None and other.up is not None and other.up.pid != os.getpid():
            raise JellyBeanError(
                f"`jellybean up` (pid {other.up.pid}) already runs from {self.workdir}; stop it with "
                f"`jellybean down --workdir {self.workdir}` or give this one another --workdir")
        me = record("up", "up", os.getpid())
        self.state = UpState(workdir=str(self.workdir), broker_url="", started_at=time.time(),
                             processes=(me,) if me else ())
        write_state(self.workdir, self.state)

    def update(self, *, plan: str | None = None, broker_url: str | None = None, broker_pid: int | None = None,
               agents: dict[str, int] | None = None, site_brokers: dict[str, int] | None = None,
               netns_run: str | None = None) -> None:
        processes = [p for p in self.state.processes if p.role == "up"]
        brokers = [p for p in self.state.processes if p.role == "broker"]
        if broker_pid is not None:
            brokers = [r] if (r := record("broker", "broker", broker_pid)) else []
        if site_brokers is not None:
            brokers = [r for site, pid in sorted(site_brokers.items()) if (r := record("broker", site, pid))]
        processes += brokers
        if agents is None:
            processes += [p for p in self.state.processes if p.role == "agent"]
        else:
            processes += [r for name, pid in sorted(agents.items()) if (r := record("agent", name, pid))]
        self.state = self.state.model_copy(update={
            "plan": plan if plan is not None else self.state.plan,
            "broker_url": broker_url if broker_url is not None else self.state.broker_url,
            "netns_run": netns_run if netns_run is not None else self.state.netns_run,
            "processes": tuple(processes)})
        write_state(self.workdir, self.state)

    def close(self) -> None:
        remove_state(self.workdir, os.getpid())
