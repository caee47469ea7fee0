"""`jellybean agent`: connect, announce, heartbeat, and run whatever the controller assigns.

Threads: the transport's network thread (handlers only decode and enqueue), `assign` (applies
assignments: loading models can take seconds), `heartbeat` (heartbeats and metrics, and items
held too long), and each task's workers. Nothing a peer sends can stop the agent: bad messages are
logged and dropped.

Data items are acknowledged to the broker only when their work is done (processed and the outputs
acknowledged in turn, forwarded, or dropped with a tombstone), so that what a killed agent held
comes back to it, or to whoever takes its session, from the broker. Items for an operator that is
still starting, or that arrive before any assignment, are held (bounded), not dropped. An
assignment takes effect at once for the data: its tasks start beside the old ones, and only when
all have loaded do routing, the running tasks and the version in the heartbeats switch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from jellybean.agents import topics
from jellybean.agents.coding import Coding
from jellybean.agents.items import Item, MessageError, decode_item, encode_item
from jellybean.agents.messages import (
    Announce,
    Assignment,
    Heartbeat,
    ModelRequest,
    Status,
    Task,
    decode_chunk,
    parse_message,
)
from jellybean.agents.operators.base import OperatorConfig, create
from jellybean.agents.resend import Resender, acknowledgement, served
from jellybean.agents.routing import Router, WeightedChoice, WorkerSpread
from jellybean.agents.tasks import TaskRunner
from jellybean.agents.telemetry import AgentTelemetry
from jellybean.agents.transport import Countdown, Done, MqttLink, Will
from jellybean.errors import JellyBeanError

log = logging.getLogger(__name__)
# Items held for a task that is not running yet: at most this many (the oldest beyond are dropped,
# counted), and for at most this long once an assignment is in force (then re-homed).
MAX_HELD = 5000
HOLD_FOR_TASK_S = 30.0
CODING_TICK_S = 0.01  # at least this often, parity groups are flushed and decoders checked
CODING_LOG_S = 5.0    # at most this often, the parity counts in the log


@dataclass
class _Held:
    operator: str
    item: Item
    nbytes: int
    ack: Done
    since: float = field(default_factory=time.monotonic)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
        return list(ort.get_available_providers())
    except Exception:  # noqa: BLE001 - an agent without ONNX Runtime still runs built-in operators
        return []


def total_memory_mb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return 0.0


@dataclass
class AgentOptions:
    name: str
    hardware: str
    broker: str
    site: str | None = None
    ca: Path | None = None
    model_dirs: tuple[Path, ...] = ()
    cache_dir: Path | None = None
    metrics_port: int | None = None      # None: no HTTP endpoint; 0: any free port
    heartbeat_s: float = 1.0
    metrics_s: float = 1.0   # the demand `deploy --adapt` follows is this fresh
    model_timeout_s: float = 60.0
    hold_s: float = 1.0
    threads: int | None = None


@dataclass
class _Download:
    name: str
    total: int | None = None
    size: int = 0
    chunks: dict[int, bytes] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    path: Path | None = None
    error: str | None = None


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.opts = options
        self.name = topics.check_name(options.name)
        self.site = topics.check_name(options.site or options.name, "site name")
        self.cache_dir = options.cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
            / "jellybean" / "models"
        self.telemetry = AgentTelemetry(self.name, self.site)
        self.link = MqttLink(options.broker, f"jb-agent-{self.name}", ca=options.ca,
                             will=Will(topics.status(self.name),
                                       Status(agent=self.name, state="offline").to_bytes()))
        self.assignment: Assignment | None = None
        self.router = Router({}, {}, {})
        self.spread = WorkerSpread()                # protected operators' agents, where a site has several
        self._spread_lock = threading.RLock()       # one protected item's pick and its group slot together
        self.tasks: dict[tuple[str, str], TaskRunner] = {}   # (operator, variant)
        self._mix: dict[str, WeightedChoice] = {}   # operator -> its variants' weights, where several run
        self.errors: dict[str, str] = {}
        self._tasks_lock = threading.RLock()
        self._pending: queue.Queue[Assignment | None] = queue.Queue()
        self._downloads: dict[str, _Download] = {}
        self._stop = threading.Event()
        self._beat_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._models = self._scan_models()
        self._seq = 0
        self._starting: set[str] = set()       # operators with a task of an assignment being applied
        self._held: list[_Held] = []           # guarded by _tasks_lock
        self.coding = Coding(self.name, self.site)
        self.resender = Resender(wake=self.coding.wake)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Agent":
        if self.opts.metrics_port is not None:
            self.telemetry.serve(self.opts.metrics_port)
        self.link.on_connect(self._announce)
        self.link.subscribe(topics.assignment(self.name), self._on_assignment)
        self.link.subscribe(f"{topics.ROOT}/models/{self.name}/+", self._on_chunk)
        self._data_subs: set[str] = set()
        self._subscribe_data(shared=False, operators=[], acked=[], protected=[])
        self.link.start()
        for target, name in ((self._apply_loop, "assign"), (self._heartbeat_loop, "heartbeat"),
                             (self._coding_loop, "coding")):
            t = threading.Thread(target=target, name=f"{name}-{self.name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, *, graceful: bool = True) -> None:
        """Stop. `graceful=False` stands for a crash: no offline status, the broker sends the will."""
        self._stop.set()
        self._beat_now.set()
        self._pending.put(None)
        with self._tasks_lock:
            for runner in self.tasks.values():
                runner.stop()
            self.tasks.clear()
        if graceful and self.link.connected:
            self.link.publish(topics.status(self.name), Status(agent=self.name, state="offline").to_bytes(),
                              retain=True)
            time.sleep(0.1)
        self.link.stop(disconnect=graceful)
        for t in self._threads:
            t.join(timeout=5)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    # -- presence --------------------------------------------------------------------------------
    def _announce(self) -> None:
        self.link.publish(topics.status(self.name), Status(agent=self.name, state="online").to_bytes(), retain=True)
        self.link.publish(topics.announce(self.name), Announce(
            agent=self.name, site=self.site, hardware=self.opts.hardware, providers=available_providers(),
            memory_mb=total_memory_mb(), cpus=os.cpu_count() or 1,
            models={sha: p.name for sha, p in self._models.items()}, metrics_url=self.telemetry.url,
            pid=os.getpid(), host=socket.gethostname()).to_bytes(), retain=True)
        self._beat_now.set()

    def _heartbeat_loop(self) -> None:
        next_metrics = time.monotonic() + self.opts.metrics_s
        while True:
            # A beat every heartbeat_s, and one at once when the agent (re)connects or its tasks
            # change: whoever waits for an agent to be up or to run an assignment (the controller,
            # `zoo profile`) learns it then, not up to a period later.
            self._beat_now.wait(self.opts.heartbeat_s)
            self._beat_now.clear()
            if self._stop.is_set():
                return
            self._release_held()
            if not self.link.connected:
                continue
            self._seq += 1
            with self._tasks_lock:
                version = self.assignment.version if self.assignment else 0
                running = sorted({op for op, _ in self.tasks})
                errors = [f"{op}: {e}" for op, e in self.errors.items()]
            self.link.publish(topics.heartbeat(self.name), Heartbeat(
                agent=self.name, seq=self._seq, assignment_version=version, running=running,
                errors=errors).to_bytes(), qos=0)
            if time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + self.opts.metrics_s
                snap = self.telemetry.snapshot(self.opts.metrics_s, version)
                self.link.publish(topics.metrics(self.name), snap.to_bytes(), qos=0)

    # -- assignments -----------------------------------------------------------------------------
    def _on_assignment(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained assignment
        try:
            message = parse_message(payload, topic, Assignment)
        except MessageError as exc:
            self.telemetry.reject()
            log.warning("dropped: %s", exc)
            return
        if message.agent != self.name:
            self.telemetry.reject()
            log.warning("dropped: %s: assignment is for agent '%s', not '%s'", topic, message.agent, self.name)
            return
        self._pending.put(message)

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            message = self._pending.get()
            if message is None:
                return
            # Only the newest assignment matters.
            while not self._pending.empty():
                newer = self._pending.get()
                if newer is None:
                    return
                if newer.version >= message.version:
                    message = newer
            if self.assignment is not None and message.version <= self.assignment.version:
                log.info("ignoring assignment version %d (have %d)", message.version, self.assignment.version)
                continue
            try:
                self.apply(message)
            except Exception:  # noqa: BLE001 - a bad assignment must not kill the agent
                log.exception("could not apply assignment version %d", message.version)

    def _subscribe_data(self, shared: bool, operators: list[str], acked: list[str], protected: list[str]) -> None:
        """Alone at its site, the agent takes every item for the site (and re-homes what it does not
        run); with peers, each operator's items through a shared subscription, so the broker hands
        each item to one of the agents that run it. Either way every acknowledgement for the
        operators it runs that feed one with re-sends (`acked`): only their sender knows the item.
        And its own topic of every protected operator, whether it runs it or not: an item a
        producer addressed to it under an older plan is then re-homed, not lost at the broker."""
        if shared:
            wanted = {f"$share/{self.site}/{topics.data(self.site, op)}" for op in operators}
        else:
            wanted = {topics.data(self.site, "+")}
        wanted |= {topics.direct(self.site, op, self.name) for op in protected}
        acks = {topics.ack(self.site, op) for op in acked}
        for topic in self._data_subs - wanted - acks:
            self.link.unsubscribe(topic)
        for topic in wanted - self._data_subs:
            self.link.subscribe(topic, self._on_data, manual=True)
        for topic in acks - self._data_subs:
            self.link.subscribe(topic, self._on_ack, qos=0)
        self._data_subs = wanted | acks

    def apply(self, a: Assignment) -> None:
        """Start what `a` adds beside what runs, then switch at once: routing, tasks, version."""
        log.info("applying assignment version %d: %s", a.version,
                 ", ".join(f"{t.operator}={t.variant}x{t.workers}" for t in a.tasks) or "nothing")
        wanted = {(t.operator, t.variant): t for t in a.tasks}
        with self._tasks_lock:
            keep = {k for k, r in self.tasks.items() if k in wanted and r.same_as(wanted[k])}
            self._starting = {op for op, _ in set(wanted) - keep}
        started: dict[tuple[str, str], TaskRunner] = {}
        errors: dict[str, str] = {}
        try:
            for key in sorted(set(wanted) - keep):
                try:
                    started[key] = self._start_task(wanted[key], a)
                except Exception as exc:  # noqa: BLE001 - report it in heartbeats; the others run
                    log.error("cannot run %s (%s): %s", key[0], key[1], exc)
                    errors[key[0]] = str(exc)
        finally:
            with self._tasks_lock:
                self._starting = set()
        stopped: list[TaskRunner] = []
        with self._tasks_lock:
            self.router.update(a.routing, a.placements, a.keyed)
            for key in list(self.tasks):
                if key not in keep:
                    stopped.append(self.tasks.pop(key))
                else:
                    self.tasks[key].drop_after_ms = a.drop_after_ms
                    self.tasks[key].deadline_ms = a.deadline_for(key[0])
            self.tasks.update(started)
            self._mix = self._mixes(a)
            self.errors = errors
            self.assignment = a
            held, self._held = self._held, []
        self.resender.update(a.resend)
        here = sorted({op for op, _ in self.tasks})
        self._subscribe_data(a.shared, here, [op for op in here if set(a.downstream.get(op, [])) & set(a.resend)],
                             sorted(a.parity))
        self.spread.update(a.direct, {op: run.k for op, run in a.parity.items()})
        for edge, op, query in self.coding.update(a):
            self._send(op, query, edge=edge)
        for runner in stopped:
            # Its workers finish what they hold; what is left goes where the operator runs now
            # (its successor here, when only the variant or the worker count changed).
            for item, ack in runner.stop():
                self._dispatch(runner.task.operator, item, 0, ack)
        for h in held:
            self._dispatch(h.operator, h.item, h.nbytes, h.ack, since=h.since)
        self._beat_now.set()   # after the data subscriptions: a sender told "running" is heard

    @property
    def operators(self) -> set[str]:
        with self._tasks_lock:
            return {op for op, _ in self.tasks}

    def runners(self, operator: str) -> list[TaskRunner]:
        """The runners of `operator` here, one per variant."""
        with self._tasks_lock:
            return [r for (op, _), r in sorted(self.tasks.items()) if op == operator]

    def _mixes(self, a: Assignment) -> dict[str, WeightedChoice]:
        """Operators run here in several variants: each item picks one by the assignment's weights
        (by workers where it gives none). Picked by the item's key (its stream for keyed
        operators), so a redelivered item meets the runner that saw it first and is not run twice."""
        variants: dict[str, dict[str, float]] = defaultdict(dict)
        for (op, var), runner in self.tasks.items():
            variants[op][var] = float(runner.task.workers)
        out = {}
        for op, own in variants.items():
            if len(own) < 2:
                continue
            given = {v: w for v, w in a.mix.get(op, {}).items() if v in own}
            out[op] = WeightedChoice(given if sum(given.values()) > 0 else own, "stream")
        return out

    def _runner(self, operator: str, item: Item) -> TaskRunner | None:
        """The runner of `operator` that takes `item` (holds _tasks_lock)."""
        mix = self._mix.get(operator)
        if mix is not None:
            keyed = self.router.keyed.get(operator, "item") != "item"
            runner = self.tasks.get((operator, mix.pick(item.stream if keyed else "|".join(map(str, item.key)))))
            if runner is not None:
                return runner
        return next((r for (op, _), r in self.tasks.items() if op == operator), None)

    def _start_task(self, task: Task, a: Assignment) -> TaskRunner:
        model = self._model_path(task) if task.model else None
        # The plan's capacity was measured with the profile's threads; run with them where it says.
        threads = task.threads or self.opts.threads

        def factory(i: int):
            return create(task.runtime, OperatorConfig(operator=task.operator, variant=task.variant, model=model,
                                                       threads=threads, batch=task.batch, params=task.params))

        return TaskRunner(task, self.site, factory, self._emit, self.telemetry, drop_after_ms=a.drop_after_ms,
                          deadline_ms=a.deadline_for(task.operator), hold_s=self.opts.hold_s).start()

    # -- models ----------------------------------------------------------------------------------
    def _scan_models(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for d in (*self.opts.model_dirs, self.cache_dir):
            if d and Path(d).is_dir():
                for p in sorted(Path(d).rglob("*.onnx")):
                    try:
                        found.setdefault(sha256_file(p), p)
                    except OSError:
                        continue
        return found

    def _model_path(self, task: Task) -> Path:
        if task.sha256 in self._models and self._models[task.sha256].is_file():
            return self._models[task.sha256]
        for d in self.opts.model_dirs:
            p = Path(d) / (task.model or "")
            if p.is_file() and (task.sha256 is None or sha256_file(p) == task.sha256):
                return p
        if task.sha256 is None:
            raise JellyBeanError(f"model {task.model} is not in {', '.join(map(str, self.opts.model_dirs)) or 'any zoo'}"
                                 " and the plan gives no sha256 to fetch it by")
        return self._fetch(task.sha256, task.model or f"{task.sha256}.onnx")

    def _fetch(self, sha: str, name: str) -> Path:
        """Ask the controller for the file and wait for its checksummed chunks."""
        download = self._downloads.setdefault(sha, _Download(name=name))
        self.link.publish(topics.model_request(self.name), ModelRequest(agent=self.name, sha256=sha, name=name).to_bytes())
        log.info("model %s (%s) not here; requested it over the broker", name, sha[:12])
        if not download.done.wait(self.opts.model_timeout_s):
            raise JellyBeanError(f"model {name} did not arrive within {self.opts.model_timeout_s:.0f} s")
        if download.error:
            raise JellyBeanError(download.error)
        assert download.path is not None
        self._models[sha] = download.path
        return download.path

    def _on_chunk(self, topic: str, payload: bytes) -> None:
        try:
            header, data = decode_chunk(payload, topic)
        except MessageError as exc:
            self.telemetry.reject()
            log.warning("dropped: %s", exc)
            return
        d = self._downloads.get(header.sha256)
        if d is None or d.done.is_set():
            return
        d.total, d.size = header.total, header.size
        d.chunks[header.index] = data
        if len(d.chunks) < header.total:
            return
        blob = b"".join(d.chunks[i] for i in range(header.total))
        if len(blob) != header.size or hashlib.sha256(blob).hexdigest() != header.sha256:
            d.error = f"model {header.name} arrived with the wrong size or checksum"
        else:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            path = self.cache_dir / f"{header.sha256}.onnx"
            tmp = path.with_suffix(".part")
            tmp.write_bytes(blob)
            tmp.replace(path)
            d.path = path
            log.info("model %s received (%d bytes, %d chunks)", header.name, header.size, header.total)
        d.done.set()

    # -- data ------------------------------------------------------------------------------------
    def _on_data(self, topic: str, payload: bytes, ack: Done) -> None:
        operator = topics.data_operator(topic)
        try:
            item = decode_item(payload, topic)
        except MessageError as exc:
            self.telemetry.reject()
            log.warning("dropped: %s", exc)
            ack()
            return
        if self.coding.active and self.coding.arrived(operator, item):
            ack()   # a parity output: it ends in the decoder
            return
        self._dispatch(operator, item, len(payload), ack)

    def _on_ack(self, topic: str, payload: bytes) -> None:
        try:
            ack = decode_item(payload, topic)
            self.resender.acknowledged(served(ack, topic), ack.key)
        except MessageError as exc:
            self.telemetry.reject()
            log.warning("dropped: %s", exc)

    def _coding_loop(self) -> None:
        """Code the groups that waited long enough; hand on the outputs the decoders rebuilt."""
        said: dict[str, int] = {}
        next_log = 0.0
        while not self._stop.is_set():
            # Woken when a group fills or an output comes, else at the next decode or group deadline.
            dues = [t for t in (self.coding.next_due(), self.resender.next_due()) if t is not None]
            wait = min(CODING_TICK_S, max(0.0, min(dues) - time.monotonic())) if dues else CODING_TICK_S
            self.coding.wake.wait(wait)
            self.coding.wake.clear()
            if not self.coding.active and not self.resender.active:
                continue
            if time.monotonic() >= next_log:
                counts = {**self.coding.counts(), **self.resender.counts()}
                if counts != said and any(counts.values()):
                    log.info("redundancy: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
                    said, next_log = counts, time.monotonic() + CODING_LOG_S
            try:
                for edge, op, copy in self.resender.due():
                    self._send(op, copy, edge=edge)
                queries, rebuilt = self.coding.tick()
                for edge, op, query in queries:
                    self._send(op, query, edge=edge)
                for consumer, item in rebuilt:
                    self._dispatch(consumer, item, 0, lambda: None)
            except Exception:  # noqa: BLE001 - redundancy is best effort; the data path goes on
                log.exception("parity coding")

    def _dispatch(self, operator: str, item: Item, nbytes: int, ack: Done, since: float | None = None) -> None:
        """Run the item here, hold it for a task that is starting, or send it where it runs now."""
        with self._tasks_lock:
            runner = self._runner(operator, item)
            if runner is None and (self.assignment is None or operator in self._starting):
                self._hold(_Held(operator, item, nbytes, ack, since if since is not None else time.monotonic()))
                return
        if runner is None:
            # Not (or no longer) ours: a re-plan moved the operator; send the item where it runs now.
            self._send(operator, item, rehome=True, on_done=ack)
            return
        runner.offer(item, nbytes, ack)

    def _hold(self, held: _Held) -> None:
        """Keep an item until its task runs (holds _tasks_lock)."""
        self._held.append(held)
        if len(self._held) > MAX_HELD:
            old = self._held.pop(0)
            self.telemetry.dropped(old.operator, "held too many")
            log.warning("holding more than %d items for tasks not running yet; %s/%d dropped",
                        MAX_HELD, old.item.stream, old.item.frame)
            old.ack()

    def _release_held(self) -> None:
        """Items held past HOLD_FOR_TASK_S under an assignment go where their operator runs."""
        now = time.monotonic()
        with self._tasks_lock:
            if self.assignment is None or self._starting:
                return
            due = [h for h in self._held if now - h.since >= HOLD_FOR_TASK_S]
            self._held = [h for h in self._held if h not in due]
        for h in due:
            self._send(h.operator, h.item, rehome=True, on_done=h.ack)

    def _emit(self, operator: str, items: list[Item], done: Done | None = None) -> None:
        """Send `operator`'s outputs downstream (or to the sink); `done` once the broker has all."""
        countdown = Countdown(done or (lambda: None))
        a = self.assignment
        if a is not None:
            for item in items:
                if operator in a.resend:
                    self._acknowledge(operator, item)
                for downstream in a.downstream.get(operator, []):
                    if downstream in a.resend:
                        self.resender.sent(f"{operator}->{downstream}", downstream, item)
                    edge = f"{operator}->{downstream}"
                    if a.parity and item.dropped is None and downstream in a.parity:
                        # The pick and the group slot together, so a group's members go to different workers.
                        with self._spread_lock:
                            self._send(downstream, item, edge=edge, on_done=countdown.hold(), spread=True)
                            self.coding.encode(operator, downstream, item)   # the coding thread sends the query
                    else:
                        self._send(downstream, item, edge=edge, on_done=countdown.hold())
                if operator in a.sinks and a.sink_topic:
                    payload = encode_item(item)
                    self.link.publish(a.sink_topic, payload, on_done=countdown.hold())
                    self.telemetry.sent("sink", len(payload), item.session)
            if len(items) > 1:
                # A batch: a coding group left open would wait for the next batch to fill it.
                for downstream in a.downstream.get(operator, []):
                    if downstream in a.parity:
                        self.coding.seal(downstream)
        countdown()

    def _acknowledge(self, operator: str, item: Item) -> None:
        """Tell the agents of the operator that sent `item` here that it was served (re-sends)."""
        found = acknowledgement(operator, item)
        if found is not None:
            site, producer, ack = found
            self.link.publish(topics.ack(site, producer), encode_item(ack), qos=0)

    def _send(self, operator: str, item: Item, *, edge: str | None = None, rehome: bool = False,
              on_done: Done | None = None, spread: bool = False) -> None:
        """`item` to a site that runs `operator` (with `spread`, to one of its agents in turn, where
        it has several: Assignment.direct)."""
        edge = edge or f"*->{operator}"
        site = self.router.next_site(edge, self.site, item.stream)
        if rehome and site == self.site:
            # We are the destination but no longer run it; pick another site of its placements.
            others = {s: w for s, w in self.router.placements.get(operator, {}).items() if s != self.site}
            site = Router({}, {operator: others}, self.router.keyed).next_site(edge, self.site, item.stream)
        if site is None:
            # Nowhere runs it: the frame ends here, and its tombstone says so downstream.
            self.telemetry.dropped(operator, "no route")
            log.warning("no site runs %s; item %s/%d dropped", operator, item.stream, item.frame)
            if item.dropped is None:
                item = item.tombstone(f"no site runs {operator}")
            self._emit(operator, [item], on_done)
            return
        payload = encode_item(item)
        agent = self.spread.pick(operator, site) if spread else None
        topic = topics.direct(site, operator, agent) if agent else topics.data(site, operator)
        self.link.publish(topic, payload, on_done=on_done)
        self.telemetry.sent(site, len(payload), item.session)
