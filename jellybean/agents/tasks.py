"""One operator running on an agent: dedup, ordering, batching, workers, dropping what is late.

    offer(item, ack) ─> implausible (time far ahead, frame far ahead)? ─> rejected, counted
                     └> seen before? (stream, session, frame) ─> duplicate, counted, discarded
                     └> keyed "item": queue ─> N workers
                     └> keyed "stream"/"global": reorder buffer per (stream, session) ─> 1 worker
    worker: take up to `batch` items within `max_batch_latency_ms`; items older than
            `drop_after_ms` since capture become tombstones ("late"), and with a `deadline_ms`
            so do items the operator would finish after capture + deadline at its current
            service time ("deadline"; the assignment's deadline less what the operators after
            this one need); the rest go to the operator.
    emit(operator, outputs, done) is the agent's: it routes and publishes, and calls `done` once
    the broker has every output; only then are the inputs acknowledged (`ack`), so an agent that
    dies holding items gets them back from the broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

from jellybean.agents.items import Item
from jellybean.agents.messages import Task
from jellybean.agents.operators.base import Operator
from jellybean.agents.telemetry import AgentTelemetry
from jellybean.agents.transport import Done

log = logging.getLogger(__name__)
Emit = Callable[[str, list[Item], Done], None]
# A stream's first frames may arrive out of order (parallel upstream workers); wait this long for
# them before starting, and `hold_s` for a missing frame later on.
START_HOLD_S = 0.25
# How far ahead of an ordered stream an item may be before it is implausible: this many frames,
# plus MAX_FPS per second of capture time since the stream's last frame. A camera that was away
# for a minute comes back; a stray frame a million ahead does not silence the real ones.
AHEAD_SLACK = 256
MAX_FPS = 480.0
# Capture times this far in the future are not clock skew.
FUTURE_S = 600.0
# Sessions (runs of a stream's frame counter) kept apart per stream; more evict the oldest.
SESSIONS_PER_STREAM = 4


SERVICE_EWMA = 0.3  # weight of the newest batch in the service time the deadline rule uses


def _nothing() -> None:
    pass


def acks_of(queued: "list[_Queued]") -> Done:
    """One callable that acknowledges every item of `queued`."""
    acks = [q.ack for q in queued]

    def done() -> None:
        for ack in acks:
            ack()
    return done


class SeenSet:
    """The (stream, frame) keys seen most recently (bounded): QoS 1 may deliver a message twice."""

    def __init__(self, size: int = 50_000) -> None:
        self._keys: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str, int]) -> bool:
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
    ack: Done = field(default=_nothing)  # releases the broker's copy once the item's work is done


class _Reorder:
    """Releases one stream's items in frame order; waits `hold_s` for a missing frame, then skips it."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.next: int | None = None
        self.waiting: dict[int, _Queued] = {}
        self.since: float | None = None  # when the head of the line started waiting
        self.last_ts: float | None = None  # capture time of the last frame released

    def implausible(self, item: Item) -> str | None:
        """Why `item` cannot be a frame of this stream now, or None."""
        if self.next is None or self.last_ts is None:
            return None
        ahead = item.frame - self.next
        allowed = AHEAD_SLACK + MAX_FPS * max(0.0, item.capture_ts - self.last_ts)
        if ahead > allowed:
            return (f"frame {item.frame} is {ahead} ahead of the stream's next frame {self.next} "
                    f"({allowed:.0f} allowed for its capture time)")
        return None

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
        if out:
            self.last_ts = max(self.last_ts or 0.0, out[-1].item.capture_ts)
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
                 telemetry: AgentTelemetry, *, drop_after_ms: float = 5000.0, deadline_ms: float | None = None,
                 hold_s: float = 1.0,
                 max_queue: int = 2000) -> None:
        self.task = task
        self.site = site
        self.emit = emit
        self.telemetry = telemetry
        self.drop_after_ms = drop_after_ms
        self.deadline_ms: float | None = deadline_ms
        self.service_s: float | None = None   # EWMA of a batch's service time (first stage to outputs)
        self.max_queue = max_queue
        self.accepted = 0   # items taken in (duplicates and rejects not counted)
        self.keyed = task.keyed
        self._factory = factory
        self._seen = SeenSet()
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        # stream -> session -> its reorder buffer (most recently active last)
        self._streams: dict[str, OrderedDict[str, _Reorder]] = {}
        self._hold_s = hold_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._operators: list[Operator] = []
        self.error: str | None = None
        self._depth = lambda: len(self._queue)
        telemetry.watch_queue(task.operator, task.variant, self._depth)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "TaskRunner":
        """Create the operator instances (loads models; may raise) and start the workers."""
        n = 1 if self.keyed != "item" else self.task.workers
        self._operators = [self._factory(i) for i in range(n)]
        later = []
        for i, op in enumerate(self._operators):
            # A pipelined worker runs each stage on its own thread; consecutive batches overlap.
            stages = op.stages() if self.keyed == "item" else None
            steps = list(stages) if stages and len(stages) > 1 else [op.process]
            queues: list[queue.Queue[_Begun | None]] = [queue.Queue(maxsize=1) for _ in steps[1:]]
            for k, step in enumerate(steps[1:], start=1):
                later.append(threading.Thread(target=self._stage, args=(step, queues[k - 1], queues[k:k + 1]),
                                              daemon=True, name=f"{self.task.operator}-{i}-stage{k}"))
            t = threading.Thread(target=self._work, args=(op, steps[0], queues[:1]), daemon=True,
                                 name=f"{self.task.operator}-{i}")
            t.start()
            self._threads.append(t)
        for t in later:   # joined after the workers, which hand them their last batch
            t.start()
            self._threads.append(t)
        if self.keyed != "item":
            t = threading.Thread(target=self._tick, daemon=True, name=f"{self.task.operator}-reorder")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[tuple[Item, Done]]:
        """Stop the workers; returns the items not yet processed, each with its ack (to be re-homed)."""
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
        self.telemetry.unwatch_queue(self.task.operator, self.task.variant, self._depth)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            for sessions in self._streams.values():
                for r in sessions.values():
                    left.extend(r.drain())
        return [(q.item, q.ack) for q in left]

    def same_as(self, task: Task) -> bool:
        return self.task.model_dump(exclude={"params"}) == task.model_dump(exclude={"params"}) \
            and self.task.params == task.params

    # -- input -----------------------------------------------------------------------------------
    def offer(self, item: Item, nbytes: int, ack: Done = _nothing) -> None:
        """Take `item`; `ack` is called once it is done with (processed and sent on, or dropped)."""
        op = self.task.operator
        self.telemetry.received(op, nbytes, item.units)
        if item.capture_ts > time.time() + FUTURE_S:
            self._reject(item, f"capture time {item.capture_ts:.3f} is more than {FUTURE_S:.0f} s in the future",
                         ack)
            return
        if self.keyed != "item":
            with self._cond:
                r = self._streams.get(item.stream, {}).get(item.session)
                why = r.implausible(item) if r is not None else None
            if why:
                self._reject(item, why, ack)
                return
        if not self._seen.add(item.key):
            self.telemetry.duplicate(op)
            ack()
            return
        q = _Queued(item, time.time(), ack)
        evicted: list[_Queued] = []
        with self._cond:
            self.accepted += 1
            if self.keyed == "item":
                ready, late = [q], []
            else:
                r, evicted = self._reorder_for(item)
                ready, late = r.push(q)
            self._queue.extend(evicted)
            self._queue.extend(ready)
            overflow = []
            while len(self._queue) > self.max_queue:
                overflow.append(self._queue.popleft())
            if ready or evicted:
                self._cond.notify()
        for q_late in late:
            self._drop([q_late], "out of order")
        if overflow:
            self._drop(overflow, "queue full")

    def _reorder_for(self, item: Item) -> tuple[_Reorder, list[_Queued]]:
        """The reorder buffer of the item's (stream, session), and the items of a session it evicts
        (released in order: their session has ended). Holds `_cond`."""
        sessions = self._streams.setdefault(item.stream, OrderedDict())
        r = sessions.get(item.session)
        evicted: list[_Queued] = []
        if r is None:
            r = sessions[item.session] = _Reorder(self._hold_s)
            if len(sessions) > SESSIONS_PER_STREAM:
                _, old = sessions.popitem(last=False)
                evicted = old.drain()
        else:
            sessions.move_to_end(item.session)
        return r, evicted

    def _reject(self, item: Item, why: str, ack: Done) -> None:
        """An implausible item: logged, counted, dropped; it changes no stream's state."""
        self.telemetry.reject()
        log.warning("rejected %s/%d at %s: %s", item.stream, item.frame, self.task.operator, why)
        ack()

    def _drop(self, queued: list[_Queued], reason: str) -> None:
        """Count these items as dropped here and send their tombstones on, so the sink counts them too."""
        name = self.task.operator
        self.telemetry.dropped(name, reason, len(queued))
        now = round(time.time(), 4)
        stones = []
        for q in queued:
            stone = q.item.tombstone(f"{reason} at {name}")
            stone.trace.append([self.site, name, now, now])
            stones.append(stone)
        try:
            self.emit(name, stones, acks_of(queued))
        except Exception:  # noqa: BLE001
            log.exception("publishing tombstones of %s", name)

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            with self._cond:
                released = []
                for sessions in self._streams.values():
                    for r in sessions.values():
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
            # Items that can no longer make their deadline leave from the head, so a batch is
            # filled with live items: under overload a batch of mostly stale items would run the
            # model on a few, at a worse per-item cost, and serve less than the profiled capacity.
            expired: dict[str, list[_Queued]] = {}
            batch: list[_Queued] = []
            deadline = time.monotonic() + window
            while len(batch) < batch_max:
                if self._queue:
                    q = self._queue.popleft()
                    why = self._expiry(q.item, time.time()) if self.keyed == "item" else None
                    if why is None:
                        batch.append(q)
                    else:
                        expired.setdefault(why, []).append(q)
                    continue
                if not batch:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                if self._stop.is_set():
                    break
        for why, queued in expired.items():
            self._drop(queued, why)
        return batch

    def _expiry(self, item: Item, now: float) -> str | None:
        """Why `item` should not be processed any more ("late", "deadline"), or None."""
        if item.dropped is not None:
            return None
        if (now - item.capture_ts) * 1000.0 > self.drop_after_ms:
            return "late"
        if self.deadline_ms is not None and \
                (now + (self.service_s or 0.0) - item.capture_ts) * 1000.0 > self.deadline_ms:
            return "deadline"
        return None

    def _work(self, operator: Operator, first: Callable[[list[Item]], object],
              onward: "list[queue.Queue[_Begun | None]]") -> None:
        """Take batches; run the first stage (all of `process` unless pipelined) and hand it on."""
        name = self.task.operator
        sessions: dict[str, str] = {}   # stream -> the session the operator's state belongs to
        try:
            while not self._stop.is_set():
                batch = self._take()
                if not batch:
                    continue
                now = time.time()
                live, passed = [], []
                for q in batch:
                    item = q.item
                    why = self._expiry(item, now)
                    if why is not None:
                        item = item.tombstone(f"{why} at {name}")
                        self.telemetry.dropped(name, why)
                    if item.dropped is not None and self.keyed == "item":
                        passed.append((item, q.received))
                    else:
                        live.append((item, q.received))
                if self.keyed != "item":
                    for item, _ in live:
                        if sessions.setdefault(item.stream, item.session) != item.session:
                            # The stream's counter restarted: what the operator knew of it is over.
                            sessions[item.stream] = item.session
                            operator.reset_stream(item.stream)
                begun = _Begun(batch, live, passed)
                if live:
                    self._run_step(first, begun, [i for i, _ in live])
                self._hand_on(begun, onward)
        finally:
            for q in onward:
                q.put(None)

    def _stage(self, step: Callable[[object], object], inbox: "queue.Queue[_Begun | None]",
               onward: "list[queue.Queue[_Begun | None]]") -> None:
        """A later stage of a pipelined worker: run `step` on each batch and hand it on, or send it."""
        while True:
            begun = inbox.get()
            if begun is None:
                for q in onward:
                    q.put(None)
                return
            if begun.live and begun.error is None:
                self._run_step(step, begun, begun.state)
            self._hand_on(begun, onward)

    def _hand_on(self, begun: "_Begun", onward: "list[queue.Queue[_Begun | None]]") -> None:
        """To the next stage's thread, or, after the last stage, out."""
        if onward:
            onward[0].put(begun)
        else:
            self._complete(begun)

    @staticmethod
    def _run_step(step: Callable[[object], object], begun: "_Begun", value: object) -> None:
        started = time.perf_counter()
        try:
            begun.state = step(value)
        except Exception as exc:  # noqa: BLE001 - an operator failure drops its batch, not the agent
            begun.error = exc
        begun.seconds += time.perf_counter() - started

    def _complete(self, begun: "_Begun") -> None:
        """Count a processed batch and send its outputs on; its inputs are acknowledged once sent."""
        name = self.task.operator
        live = begun.live
        results = begun.state if begun.error is None else None
        outputs: list[tuple[Item, float]] = []
        if live:
            if begun.error is None and (not isinstance(results, Sequence) or len(results) != len(live)):
                got = f"{len(results)} items" if isinstance(results, Sequence) else type(results).__name__
                begun.error = RuntimeError(f"returned {got} for {len(live)} items")
            if begun.error is not None:
                exc = begun.error
                log.error("operator %s failed on a batch of %d", name, len(live), exc_info=exc)
                self.error = f"{type(exc).__name__}: {exc}"
                results = [i.tombstone(f"{name} failed") for i, _ in live]
                self.telemetry.dropped(name, "error", len(live))
            self.telemetry.processed(name, begun.seconds * 1000.0, len(live), sum(i.units for i, _ in live))
            if begun.error is None:
                self.service_s = begun.seconds if self.service_s is None else \
                    (1 - SERVICE_EWMA) * self.service_s + SERVICE_EWMA * begun.seconds
            outputs.extend((r, rec) for r, (_, rec) in zip(results, live))
        outputs.extend(begun.passed)
        out_ts = time.time()
        items = []
        for item, received in outputs:
            item.trace.append([self.site, name, round(received, 4), round(out_ts, 4)])
            items.append(item)
        try:
            self.emit(name, items, acks_of(begun.batch))
        except Exception:  # noqa: BLE001
            log.exception("publishing outputs of %s", name)


@dataclass
class _Begun:
    """A batch a worker has taken: its inputs, and what the operator made of the live ones so far."""

    batch: list[_Queued]
    live: list[tuple[Item, float]]
    passed: list[tuple[Item, float]]
    state: object = None                 # what the last stage returned (the outputs, after the last)
    error: Exception | None = None
    seconds: float = 0.0
