"""One operator running on an agent: dedup, ordering, batching, workers, dropping what is late.

    offer(item) ─> seen before? (stream, frame) ─> duplicate, counted, discarded
                └> keyed "item": queue ─> N workers
                └> keyed "stream"/"global": per-stream reorder buffer ─> queue ─> 1 worker
    worker: take up to `batch` items within `max_batch_latency_ms`; items older than
            `drop_after_ms` since capture become tombstones ("late"); the rest go to the operator.
    emit(operator, outputs) is the agent's: it routes and publishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from jellybean.agents.items import Item
from jellybean.agents.messages import Task
from jellybean.agents.operators.base import Operator
from jellybean.agents.telemetry import AgentTelemetry

log = logging.getLogger(__name__)
Emit = Callable[[str, list[Item]], None]
# A stream's first frames may arrive out of order (parallel upstream workers); wait this long for
# them before starting, and `hold_s` for a missing frame later on.
START_HOLD_S = 0.25


class SeenSet:
    """The (stream, frame) keys seen most recently (bounded): QoS 1 may deliver a message twice."""

    def __init__(self, size: int = 50_000) -> None:
        self._keys: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, key: tuple[str, int]) -> bool:
        """True when new; False for a duplicate."""
        with self._lock:
            if key in self._keys:
                return False
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return True


@dataclass
class _Queued:
    item: Item
    received: float  # time.time() at arrival


class _Reorder:
    """Releases one stream's items in frame order; waits `hold_s` for a missing frame, then skips it."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.next: int | None = None
        self.waiting: dict[int, _Queued] = {}
        self.since: float | None = None  # when the head of the line started waiting

    def push(self, q: _Queued) -> tuple[list[_Queued], list[_Queued]]:
        """(in order, too late) after adding `q`."""
        if self.next is not None and q.item.frame < self.next:
            return [], [q]
        self.waiting[q.item.frame] = q
        if self.since is None:
            self.since = time.monotonic()
        return self.release(), []

    def release(self, force: bool = False) -> list[_Queued]:
        out: list[_Queued] = []
        if self.next is None:
            # The first frames of a stream may arrive out of order: wait once before starting.
            if not force and (self.since is None or time.monotonic() - self.since < min(self.hold_s, START_HOLD_S)):
                return out
            self.next = min(self.waiting) if self.waiting else None
            if self.next is None:
                return out
        if force and self.waiting and self.next not in self.waiting:
            self.next = min(self.waiting)
        while self.next in self.waiting:
            out.append(self.waiting.pop(self.next))
            self.next += 1
        # The wait for a missing frame starts when the line stops moving, not at each arrival.
        if not self.waiting:
            self.since = None
        elif out or force:
            self.since = time.monotonic()
        return out

    def expired(self) -> bool:
        if self.next is None:
            return bool(self.waiting) and self.since is not None and \
                time.monotonic() - self.since >= min(self.hold_s, START_HOLD_S)
        return bool(self.waiting) and self.since is not None and time.monotonic() - self.since >= self.hold_s

    def drain(self) -> list[_Queued]:
        items = [self.waiting[k] for k in sorted(self.waiting)]
        self.waiting.clear()
        return items


class TaskRunner:
    """Runs `task.workers` workers of one operator (one for keyed operators, which hold state)."""

    def __init__(self, task: Task, site: str, factory: Callable[[int], Operator], emit: Emit,
                 telemetry: AgentTelemetry, *, drop_after_ms: float = 5000.0, hold_s: float = 1.0,
                 max_queue: int = 2000) -> None:
        self.task = task
        self.site = site
        self.emit = emit
        self.telemetry = telemetry
        self.drop_after_ms = drop_after_ms
        self.max_queue = max_queue
        self.keyed = task.keyed
        self._factory = factory
        self._seen = SeenSet()
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._reorder: dict[str, _Reorder] = {}
        self._hold_s = hold_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._operators: list[Operator] = []
        self.error: str | None = None
        telemetry.watch_queue(task.operator, task.variant, lambda: len(self._queue))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "TaskRunner":
        """Create the operator instances (loads models; may raise) and start the workers."""
        n = 1 if self.keyed != "item" else self.task.workers
        self._operators = [self._factory(i) for i in range(n)]
        for i, op in enumerate(self._operators):
            t = threading.Thread(target=self._work, args=(op,), daemon=True,
                                 name=f"{self.task.operator}-{i}")
            t.start()
            self._threads.append(t)
        if self.keyed != "item":
            t = threading.Thread(target=self._tick, daemon=True, name=f"{self.task.operator}-reorder")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Item]:
        """Stop the workers; returns the items not yet processed (to be re-homed)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=10)
        for op in self._operators:
            try:
                op.close()
            except Exception:  # noqa: BLE001
                log.exception("closing %s", self.task.operator)
        with self._cond:
            left = [q.item for q in self._queue]
            self._queue.clear()
            for r in self._reorder.values():
                left.extend(q.item for q in r.drain())
        return left

    def same_as(self, task: Task) -> bool:
        return self.task.model_dump(exclude={"params"}) == task.model_dump(exclude={"params"}) \
            and self.task.params == task.params

    # -- input -----------------------------------------------------------------------------------
    def offer(self, item: Item, nbytes: int) -> None:
        op = self.task.operator
        self.telemetry.received(op, nbytes, item.units)
        if not self._seen.add(item.key):
            self.telemetry.duplicate(op)
            return
        q = _Queued(item, time.time())
        with self._cond:
            if self.keyed == "item":
                ready, late = [q], []
            else:
                r = self._reorder.setdefault(item.stream, _Reorder(self._hold_s))
                ready, late = r.push(q)
            self._queue.extend(ready)
            overflow = []
            while len(self._queue) > self.max_queue:
                overflow.append(self._queue.popleft())
            if ready:
                self._cond.notify()
        for q_late in late:
            self._drop([q_late.item], "out of order")
        if overflow:
            self._drop([o.item for o in overflow], "queue full")

    def _drop(self, items: list[Item], reason: str) -> None:
        """Count `items` as dropped here and send their tombstones on, so the sink counts them too."""
        name = self.task.operator
        self.telemetry.dropped(name, reason, len(items))
        now = round(time.time(), 4)
        stones = []
        for item in items:
            stone = item.tombstone(f"{reason} at {name}")
            stone.trace.append([self.site, name, now, now])
            stones.append(stone)
        try:
            self.emit(name, stones)
        except Exception:  # noqa: BLE001
            log.exception("publishing tombstones of %s", name)

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            with self._cond:
                released = []
                for r in self._reorder.values():
                    if r.expired() or (r.next is None and r.waiting):
                        released.extend(r.release(force=r.expired()))
                self._queue.extend(released)
                if released:
                    self._cond.notify()

    # -- work ------------------------------------------------------------------------------------
    def _take(self) -> list[_Queued]:
        batch_max = self.task.batch
        window = self.task.max_batch_latency_ms / 1000.0
        with self._cond:
            while not self._queue and not self._stop.is_set():
                self._cond.wait(0.1)
            if self._stop.is_set():
                return []
            batch = [self._queue.popleft()]
            deadline = time.monotonic() + window
            while len(batch) < batch_max:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                if self._stop.is_set():
                    break
        return batch

    def _work(self, operator: Operator) -> None:
        name = self.task.operator
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                continue
            now = time.time()
            live, passed = [], []
            for q in batch:
                item = q.item
                if item.dropped is None and (now - item.capture_ts) * 1000.0 > self.drop_after_ms:
                    item = item.tombstone(f"late at {name}")
                    self.telemetry.dropped(name, "late")
                if item.dropped is not None and self.keyed == "item":
                    passed.append((item, q.received))
                else:
                    live.append((item, q.received))
            outputs: list[tuple[Item, float]] = []
            if live:
                started = time.perf_counter()
                try:
                    results = operator.process([i for i, _ in live])
                    if len(results) != len(live):
                        raise RuntimeError(f"returned {len(results)} items for {len(live)}")
                except Exception as exc:  # noqa: BLE001 - an operator failure drops its batch, not the agent
                    log.exception("operator %s failed on a batch of %d", name, len(live))
                    self.error = f"{type(exc).__name__}: {exc}"
                    results = [i.tombstone(f"{name} failed") for i, _ in live]
                    self.telemetry.dropped(name, "error", len(live))
                ms = (time.perf_counter() - started) * 1000.0
                self.telemetry.processed(name, ms, len(live))
                outputs.extend((r, rec) for r, (_, rec) in zip(results, live))
            outputs.extend(passed)
            out_ts = time.time()
            items = []
            for item, received in outputs:
                item.trace.append([self.site, name, round(received, 4), round(out_ts, 4)])
                items.append(item)
            try:
                self.emit(name, items)
            except Exception:  # noqa: BLE001
                log.exception("publishing outputs of %s", name)
