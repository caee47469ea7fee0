"""The items/s one agent delivers: a real agent process, one task, kept saturated through a broker.

`zoo profile` measures every variant this way, so that the capacity a plan gives a worker is what
an agent running that variant delivers: the broker hop, the agent's network thread, batching,
`Operator.process` with its decode, pre- and post-processing, and publishing the outputs.

A feeder publishes the workload's items to the agent's data topic with a bounded number in
flight (so the agent's queue never runs dry and never grows without bound) and times the outputs
on a sink topic. Each pass over the workload comes later in time than the last (frame numbers, track ids and
scene time shifted, a fresh session per run), so that a tracker sees its cameras go on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from jellybean.agents import topics
from jellybean.agents.items import Item, MessageError, decode_item, encode_item
from jellybean.agents.messages import Assignment, Heartbeat, Task, parse_message
from jellybean.agents.processes import STOP_WITH_PARENT_ENV, stop_process
from jellybean.agents.transport import MqttLink
from jellybean.errors import JellyBeanError
from jellybean.zoo.procfs import cpu_seconds, reset_peak, status_kb

log = logging.getLogger("jellybean.zoo")
START_TIMEOUT_S = 120.0
# Outputs of the first second are not timed: an agent that has just loaded its model runs slower.
WARM_S = 1.0
MIN_CPU_WINDOW_S = 0.5
TRACK_ID_STEP = 1_000_000   # track ids of pass k are the workload's plus k times this


@dataclass
class Saturated:
    """What one saturated run measured."""

    units: int = 0                    # the plan's items in the timed outputs
    seconds: float = 0.0              # from the last untimed output to the last timed one
    outputs: int = 0                  # timed output messages
    per_unit_ms: list[float] = field(default_factory=list)   # gap before each output / its items
    cpu_seconds: float | None = None  # the agent process's CPU time (all threads) over the timed outputs

    @property
    def cpu_ms(self) -> float | None:
        """The agent's CPU milliseconds per item: what a worker costs a machine whose cores it shares."""
        return 1000.0 * self.cpu_seconds / self.units if self.cpu_seconds is not None and self.units else None

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.units and self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.per_unit_ms, q)) if self.per_unit_ms else 1000.0 / max(self.rate, 1e-9)


class AgentBench:
    """One `jellybean agent` process on a broker, given one task at a time and kept saturated."""

    def __init__(self, broker_url: str, zoo_dir: Path, hardware: str, threads: int, workdir: Path,
                 name: str = "profile") -> None:
        self.name = name
        self.workflow = f"{name}-bench"
        self.version = 0
        self._beat: Heartbeat | None = None
        self._beat_cond = threading.Condition()
        self._outputs: list[tuple[float, Item]] = []
        self._session = ""
        self._out_cond = threading.Condition()
        workdir.mkdir(parents=True, exist_ok=True)
        self._log_path = workdir / f"agent-{name}.log"
        self._log = open(self._log_path, "w")
        # The agent stops when this process is gone (a SIGTERM can land while Popen is still
        # starting it, before there is an object to stop it by).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", STOP_WITH_PARENT_ENV: str(os.getpid())}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jellybean", "agent", "--name", name, "--hardware", hardware, "--broker",
             broker_url, "--models", str(zoo_dir), "--threads", str(threads), "--cache", str(workdir / "models"),
             "--log-level", "warning"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.link: MqttLink | None = None
        try:
            self.link = MqttLink(broker_url, f"jb-profile-feeder-{name}-{os.getpid()}")
            self.link.subscribe(topics.heartbeat(name), self._on_heartbeat, qos=0)
            self.link.subscribe(topics.sink(self.workflow), self._on_output)
            self.link.start()
            self.link.wait_connected(30)
        except BaseException:
            # Interrupted (a SIGTERM turned into KeyboardInterrupt) before the caller holds this
            # object: nobody else can stop the agent just started.
            if self.link is not None:
                self.link.stop()
            stop_process(self.proc)
            self._log.close()
            raise
        self.baseline_kb: int | None = None

    # -- messages ----------------------------------------------------------------------------------
    def _on_heartbeat(self, topic: str, payload: bytes) -> None:
        try:
            beat = parse_message(payload, topic, Heartbeat)
        except MessageError as exc:
            log.warning("dropped: %s", exc)
            return
        with self._beat_cond:
            self._beat = beat
            self._beat_cond.notify_all()

    def _on_output(self, topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        try:
            item = decode_item(payload, topic)
        except MessageError as exc:
            log.warning("dropped: %s", exc)
            return
        with self._out_cond:
            if item.session == self._session:  # not a late output of an earlier run
                self._outputs.append((now, item))
                self._out_cond.notify_all()

    # -- control -----------------------------------------------------------------------------------
    def _wait_running(self, operator: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._beat_cond:
            while True:
                beat = self._beat
                if beat is not None and beat.assignment_version >= self.version:
                    if operator in beat.running:
                        return
                    if beat.errors:
                        raise JellyBeanError(f"the profiling agent cannot run {operator}: {'; '.join(beat.errors)}")
                left = deadline - time.monotonic()
                if self.proc.poll() is not None:
                    raise JellyBeanError(f"the profiling agent exited (code {self.proc.returncode}); "
                                         f"{self._log_tail()}")
                if left <= 0:
                    raise JellyBeanError(f"the profiling agent did not start {operator} within {timeout:.0f} s; "
                                         f"{self._log_tail()}")
                self._beat_cond.wait(min(left, 0.5))

    def assign(self, task: Task) -> None:
        """Give the agent `task` alone, and wait until it runs it."""
        if self.baseline_kb is None:
            self._wait_running_nothing()
        self.version += 1
        assignment = Assignment(agent=self.name, site=self.name, version=self.version, plan="profile",
                                workflow=self.workflow, tasks=[task], placements={task.operator: {self.name: 1.0}},
                                downstream={task.operator: []}, keyed={task.operator: task.keyed},
                                sinks=[task.operator], sink_topic=topics.sink(self.workflow), drop_after_ms=1e9)
        self.link.publish(topics.assignment(self.name), assignment.to_bytes(), retain=True)
        self._wait_running(task.operator, START_TIMEOUT_S)

    def _wait_running_nothing(self) -> None:
        """Until the agent is up (heartbeating), then take its memory baseline and reset its peak."""
        deadline = time.monotonic() + START_TIMEOUT_S
        with self._beat_cond:
            while self._beat is None:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise JellyBeanError(f"the profiling agent did not come up; {self._log_tail()}")
                self._beat_cond.wait(0.5)
        self.baseline_kb = (status_kb("VmRSS", self.proc.pid) or 0) if reset_peak(self.proc.pid) else 0

    def peak_memory_mb(self) -> float | None:
        """Growth of the agent's peak RSS since it came up: what loading and running the variants took."""
        peak = status_kb("VmHWM", self.proc.pid)
        if peak is None or not self.baseline_kb or peak <= self.baseline_kb:
            return None
        return (peak - self.baseline_kb) / 1024.0

    # -- measuring ---------------------------------------------------------------------------------
    def saturate(self, task: Task, items: list[Item], *, warmup: int, runs: int, min_seconds: float,
                 max_seconds: float, session: str) -> Saturated:
        """Outputs/s of `task` on `items` with the agent never idle: `warmup` outputs and WARM_S untimed, then
        until `runs` outputs and `min_seconds`, or `max_seconds` (with at least 3 outputs)."""
        self.assign(task)
        window = threading.Semaphore(4 * task.batch + 4)
        units_of: dict[tuple[str, str, int], int] = {}
        with self._out_cond:
            self._outputs = []
            self._session = session
        stop = threading.Event()
        last = max(i.frame for i in items)
        span = 1.0 + max((float(i.meta.get("t", 0.0)) for i in items), default=0.0)
        topic = topics.data(self.name, task.operator)  # an agent's site is its name

        def feed() -> None:
            passes = 0
            while not stop.is_set():
                for item in items:
                    while not window.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    shifted = replace(item, frame=item.frame + passes * last, capture_ts=time.time(),
                                      session=session, meta=_later(item.meta, passes * span, passes))
                    units_of[shifted.key] = shifted.units
                    self.link.publish(topic, encode_item(shifted))
                passes += 1

        feeder = threading.Thread(target=feed, name="profile-feeder", daemon=True)
        feeder.start()
        deadline = time.monotonic() + max_seconds + START_TIMEOUT_S
        seen = 0
        cpu_start = None
        try:
            while True:
                with self._out_cond:
                    while len(self._outputs) == seen:
                        if self.proc.poll() is not None:
                            raise JellyBeanError(f"the profiling agent exited (code {self.proc.returncode}); "
                                                 f"{self._log_tail()}")
                        if time.monotonic() > deadline:
                            raise JellyBeanError(f"{task.operator}/{task.variant}: the agent stopped answering; "
                                                 f"{self._log_tail()}")
                        self._out_cond.wait(0.5)
                    fresh = self._outputs[seen:]
                    seen = len(self._outputs)
                for _, item in fresh:
                    if item.dropped is not None:
                        raise JellyBeanError(f"{task.operator}/{task.variant} dropped an item while profiled: "
                                             f"{item.dropped}; {self._log_tail()}")
                    window.release()
                if cpu_start is None and len(self._outputs) >= max(warmup, 1) and \
                        self._outputs[-1][0] - self._outputs[0][0] >= WARM_S:
                    # Timing starts here: after `warmup` outputs and WARM_S of work, when a fresh
                    # agent has grown its arenas and its queue is full.
                    cpu_start = cpu_seconds(self.proc.pid)
                    warmup = len(self._outputs)
                if cpu_start is not None and _enough(self._outputs, warmup, runs, min_seconds, max_seconds):
                    cpu_end = cpu_seconds(self.proc.pid)
                    break
        finally:
            stop.set()
            feeder.join(timeout=10)
        result = _result(self._outputs, units_of, warmup)
        # /proc counts CPU in clock ticks (10 ms): a shorter window would say nothing.
        if cpu_start is not None and cpu_end is not None and result.seconds >= MIN_CPU_WINDOW_S:
            result.cpu_seconds = cpu_end - cpu_start
        return result

    def _log_tail(self, lines: int = 6) -> str:
        """The end of the agent's log, for an error message (its directory is temporary)."""
        self._log.flush()
        try:
            tail = self._log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            tail = []
        return "the agent's log ends: " + (" | ".join(tail) if tail else "(empty)")

    def close(self) -> None:
        try:
            self.link.publish(topics.assignment(self.name), b"", retain=True)  # clear the retained assignment
        finally:
            self.link.stop()
            stop_process(self.proc)
            self._log.close()


def _later(meta: dict, seconds: float, passes: int) -> dict:
    """The meta of an item `passes` passes over the workload later: its scene time on by `seconds`,
    and its tracks (if any) new ones, so that what keeps state per track (the associator, a sampled
    re-ID) meets new vehicles on every pass, as it would on a live stream, not the same ones again."""
    if not passes:
        return meta
    out = dict(meta)
    if "t" in meta:
        out["t"] = float(meta["t"]) + seconds
    if isinstance(meta.get("ids"), list):
        out["ids"] = [int(i) + passes * TRACK_ID_STEP for i in meta["ids"]]
    return out


def _enough(outputs: list[tuple[float, Item]], warmup: int, runs: int, min_seconds: float,
            max_seconds: float) -> bool:
    timed = len(outputs) - max(warmup, 1)
    if timed < 1:
        return False
    elapsed = outputs[-1][0] - outputs[max(warmup, 1) - 1][0]
    return (timed >= runs and elapsed >= min_seconds) or (elapsed >= max_seconds and timed >= min(3, runs))


def _result(outputs: list[tuple[float, Item]], units_of: dict[tuple[str, str, int], int], warmup: int) -> Saturated:
    start = max(warmup, 1)
    result = Saturated(outputs=len(outputs) - start, seconds=outputs[-1][0] - outputs[start - 1][0])
    for (prev, _), (now, item) in zip(outputs[start - 1:], outputs[start:]):
        n = units_of.get(item.key, item.units)
        result.units += n
        if n > 0:
            result.per_unit_ms.append((now - prev) * 1000.0 / n)
    return result
