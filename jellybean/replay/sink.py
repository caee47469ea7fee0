"""What comes out of the workflow: collected once per (stream, frame), whatever the transport did."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from jellybean.agents.items import Item


@dataclass
class Delivered:
    stream: str
    frame: int
    capture_ts: float
    received_ts: float
    dropped: str | None
    boxes: list[list[float]]
    ids: list[int]
    trace: list[list]
    reconstructed: tuple[str, ...] = ()   # operators whose output for this frame a parity decoder rebuilt
    resent: tuple[str, ...] = ()          # operators whose output for this frame came from a re-sent copy
    embedded: int | None = None           # crops a sampled re-ID embedded for this frame (None: no sampling)

    @property
    def latency_ms(self) -> float:
        return (self.received_ts - self.capture_ts) * 1000.0


def _names(value) -> tuple[str, ...]:  # noqa: ANN001 (a meta field from the wire)
    return tuple(map(str, value)) if isinstance(value, list) else ()


def _count(value) -> int | None:  # noqa: ANN001 (a meta field from the wire)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass
class SinkCollector:
    """Keeps the first copy of each (stream, frame); counts the rest as duplicates.

    A tombstone (an item dropped on the way) that is followed by a real result for the same frame
    is replaced by it; the reverse never happens, so a frame is counted once, as delivered if it
    ever was."""

    items: dict[tuple[str, int], Delivered] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition | None = None

    def __post_init__(self) -> None:
        self._arrived = threading.Condition(self._lock)

    def add(self, item: Item, received_ts: float | None = None) -> None:
        d = Delivered(stream=item.stream, frame=item.frame, capture_ts=item.capture_ts,
                      received_ts=received_ts if received_ts is not None else time.time(), dropped=item.dropped,
                      boxes=[list(map(float, b[:4])) for b in item.meta.get("boxes", [])],
                      ids=[int(i) for i in item.meta.get("ids", [])], trace=item.trace,
                      reconstructed=_names(item.meta.get("reconstructed")), resent=_names(item.meta.get("resent")),
                      embedded=_count(item.meta.get("embedded")))
        with self._lock:
            key = (item.stream, item.frame)
            old = self.items.get(key)
            if old is not None and not (old.dropped and not d.dropped):
                self.duplicates[item.stream] += 1
                return
            self.items[key] = d
            self._arrived.notify_all()

    def count(self) -> int:
        with self._lock:
            return len(self.items)

    def wait_for(self, keys: set[tuple[str, int]], timeout: float) -> bool:
        """Wait until every key has arrived (delivered or dropped), or the timeout passes."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if keys.issubset(self.items.keys()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(min(left, 0.5))

    def snapshot(self) -> dict[tuple[str, int], Delivered]:
        with self._lock:
            return dict(self.items)
