"""Agent metrics: Prometheus series for scrapers and windowed summaries for the metrics topic."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict, defaultdict, deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from jellybean.agents.messages import Metrics, OperatorMetrics
from jellybean.errors import JellyBeanError

_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
# Bytes per session (a replay, a camera's run) are kept for this many recent sessions: a replay
# reads its own traffic, not what ran before it.
SESSIONS_KEPT = 32
METRICS_HOST_ENV = "JELLYBEAN_METRICS_HOST"
DROP_LOG_EVERY_S = 10.0

log = logging.getLogger(__name__)


class DropLog:
    """Drops in the agent's log as one line per interval, with counts by operator and reason: an
    agent shedding thousands of late frames says why without a line per frame. The first drop is
    logged at once; later ones when the interval has passed (at the next drop or `flush`)."""

    def __init__(self, every_s: float = DROP_LOG_EVERY_S, clock=time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._pending: dict[tuple[str, str], int] = defaultdict(int)
        self._since: float | None = None
        self._last: float | None = None
        self._lock = threading.Lock()

    def add(self, operator: str, reason: str, n: int = 1) -> None:
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = now
            self._pending[(operator, reason)] += n
        self.flush()

    def flush(self, force: bool = False) -> str | None:
        with self._lock:
            now = self._clock()
            if not self._pending or (not force and self._last is not None and now - self._last < self.every_s):
                return None
            by_operator: dict[str, list[str]] = defaultdict(list)
            for (operator, reason), n in sorted(self._pending.items()):
                by_operator[operator].append(f"{n} {reason}")
            seconds = now - (self._since if self._since is not None else now)
            line = "; ".join(f"{op}: {', '.join(parts)}" for op, parts in by_operator.items())
            self._pending.clear()
            self._since, self._last = None, now
        log.warning("dropped in the last %.0f s: %s", seconds, line)
        return line


def metrics_host() -> str:
    """The address Prometheus endpoints listen on: $JELLYBEAN_METRICS_HOST (0.0.0.0 for a scraper on
    another machine, as in a container), else loopback only."""
    return os.environ.get(METRICS_HOST_ENV) or "127.0.0.1"


def serve_registry(registry: CollectorRegistry, port: int, host: str | None = None):
    """Serve `registry` over HTTP on `port` (0: any free one); its URL and the server (to shut down)."""
    host = host or metrics_host()
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise JellyBeanError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another "
                             f"--metrics-port (0: any free port) or ${METRICS_HOST_ENV}") from None
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{server.server_port}/metrics", server


class _Window:
    """Recent processing latencies and completion times of one operator (bounded)."""

    def __init__(self, size: int = 2000) -> None:
        self.latencies: deque[float] = deque(maxlen=size)
        self.done: deque[float] = deque(maxlen=size)
        self.arrived: deque[tuple[float, int]] = deque(maxlen=size * 4)   # (time, plan items)
        self.served: deque[tuple[float, int]] = deque(maxlen=size * 4)    # (time, plan items) per batch


class AgentTelemetry:
    """Counts what one agent does. One registry per agent, so several agents can share a process."""

    def __init__(self, agent: str, site: str) -> None:
        self.agent, self.site = agent, site
        self.registry = CollectorRegistry()
        self.drop_log = DropLog()
        labels = ["operator"]
        self._items_in = Counter("jellybean_items_in", "items received", labels, registry=self.registry)
        self._items_out = Counter("jellybean_items_out", "items processed and sent on", labels, registry=self.registry)
        self._dropped = Counter("jellybean_items_dropped", "items dropped (late, queue full, failed)",
                                labels + ["reason"], registry=self.registry)
        self._duplicates = Counter("jellybean_duplicates", "duplicate items discarded", labels, registry=self.registry)
        self._queue = Gauge("jellybean_queue_depth", "items waiting", labels, registry=self.registry)
        self._latency = Histogram("jellybean_processing_latency_ms", "time from dequeue to publish, ms", labels,
                                  buckets=_BUCKETS_MS, registry=self.registry)
        self._bytes_out = Counter("jellybean_bytes_out", "bytes published, by destination site", ["to"],
                                  registry=self.registry)
        self._bytes_in = Counter("jellybean_bytes_in", "bytes received on data topics", registry=self.registry)
        self._rejected = Counter("jellybean_messages_rejected", "malformed or unknown messages dropped",
                                 registry=self.registry)
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = defaultdict(_Window)
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._queues: dict[str, callable] = {}
        self._variants: dict[str, str] = {}
        self._watched: dict[str, dict[str, object]] = defaultdict(dict)   # operator -> variant -> depth()
        self.bytes_out: dict[str, int] = defaultdict(int)
        self.session_bytes: OrderedDict[str, dict[str, int]] = OrderedDict()
        self.bytes_in = 0
        self.rejected = 0
        self.url: str | None = None

    def serve(self, port: int, host: str | None = None) -> str:
        self.url, _ = serve_registry(self.registry, port, host)
        return self.url

    # -- recording ---------------------------------------------------------------------------------
    def watch_queue(self, operator: str, variant: str, depth) -> None:
        """Report `depth()` as (part of) the operator's queue: one per variant it runs in."""
        with self._lock:
            self._watched[operator][variant] = depth
            self._refresh_watch(operator)

    def unwatch_queue(self, operator: str, variant: str, depth) -> None:
        with self._lock:
            if self._watched[operator].get(variant) is depth:
                del self._watched[operator][variant]
                self._refresh_watch(operator)

    def _refresh_watch(self, operator: str) -> None:
        watched = dict(self._watched[operator])
        if not watched:
            self._queues.pop(operator, None)
            return

        def depth() -> int:
            return sum(int(f()) for f in watched.values())

        self._queues[operator] = depth
        self._variants[operator] = "+".join(sorted(watched))
        self._queue.labels(operator).set_function(depth)

    def received(self, operator: str, nbytes: int, units: int = 1) -> None:
        self._items_in.labels(operator).inc()
        self._bytes_in.inc(nbytes)
        with self._lock:
            self._counts[operator]["in"] += 1
            self.bytes_in += nbytes
            self._arrival(operator, units)

    def duplicate(self, operator: str) -> None:
        self._duplicates.labels(operator).inc()
        with self._lock:
            self._counts[operator]["duplicates"] += 1
            _, units = self._windows[operator].arrived.pop()   # `received` counted it as an arrival
            self._counts[operator]["units"] -= units

    def _arrival(self, operator: str, units: int) -> None:
        self._windows[operator].arrived.append((time.monotonic(), units))
        self._counts[operator]["units"] += units

    def dropped(self, operator: str, reason: str, n: int = 1) -> None:
        self._dropped.labels(operator, reason).inc(n)
        with self._lock:
            self._counts[operator]["dropped"] += n
        self.drop_log.add(operator, reason, n)

    def processed(self, operator: str, latency_ms: float, n: int = 1, units: int | None = None) -> None:
        """A batch of ``n`` messages done, carrying ``units`` of the plan's items (default ``n``)."""
        self._items_out.labels(operator).inc(n)
        self._latency.labels(operator).observe(latency_ms)
        now = time.monotonic()
        with self._lock:
            self._counts[operator]["out"] += n
            self._counts[operator]["batches"] += 1
            w = self._windows[operator]
            for _ in range(n):
                w.latencies.append(latency_ms)
                w.done.append(now)
            w.served.append((now, n if units is None else units))

    def sent(self, to_site: str, nbytes: int, session: str = "") -> None:
        self._bytes_out.labels(to_site).inc(nbytes)
        with self._lock:
            self.bytes_out[to_site] += nbytes
            if session:
                per = self.session_bytes.get(session)
                if per is None:
                    per = self.session_bytes[session] = {}
                    while len(self.session_bytes) > SESSIONS_KEPT:
                        self.session_bytes.popitem(last=False)
                per[to_site] = per.get(to_site, 0) + nbytes

    def reject(self) -> None:
        self._rejected.inc()
        with self._lock:
            self.rejected += 1

    # -- summary ---------------------------------------------------------------------------------
    def snapshot(self, interval_s: float, assignment_version: int) -> Metrics:
        self.drop_log.flush()   # drops since the last line reach the log even when no more come
        now = time.monotonic()
        ops = []
        with self._lock:
            names = sorted(set(self._counts) | set(self._queues))
            for op in names:
                c = self._counts[op]
                w = self._windows[op]
                recent = [t for t in w.done if now - t <= interval_s]
                arrived = sum(n for t, n in w.arrived if now - t <= interval_s)
                served = sum(n for t, n in w.served if now - t <= interval_s)
                lat = np.asarray(w.latencies, float)
                pct = ({f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)} if lat.size else {})
                depth = self._queues.get(op)
                ops.append(OperatorMetrics(
                    operator=op, variant=self._variants.get(op, ""), items_in=c["in"], items_out=c["out"],
                    dropped=c["dropped"], duplicates=c["duplicates"], queue_depth=int(depth()) if depth else 0,
                    items_per_s=len(recent) / interval_s if interval_s > 0 else 0.0,
                    arrivals_per_s=arrived / interval_s if interval_s > 0 else 0.0, arrivals=c["units"], latency_ms=pct,
                    served_per_s=served / interval_s if interval_s > 0 else 0.0,
                    batches=c["batches"]))
            return Metrics(agent=self.agent, site=self.site, assignment_version=assignment_version,
                           interval_s=interval_s, operators=ops, bytes_out=dict(self.bytes_out),
                           bytes_in=self.bytes_in, rejected=self.rejected,
                           session_bytes_out={k: dict(v) for k, v in self.session_bytes.items()})
