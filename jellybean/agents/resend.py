"""Re-sent requests: equal-resource replication's answer to a slow or failed worker.

An operator with `resend` (Assignment.resend) runs on several replicas behind one shared
subscription. Its producer keeps a copy of every item it sends there; the replica that serves an
item tells the producer's site so (a `seen` item on `topics.ack`); an item not seen `after_ms`
after it was sent is sent again, at most `times` times, and the broker hands the copy to the next
replica. Whichever output comes second is a duplicate to the consumer's filter, so a frame still
ends once.

The copies are bounded: past MAX_PENDING the oldest is forgotten (counted), and an item is
forgotten after its last re-send, since nothing more would be done for it.

Re-sends are budgeted, as gRPC and Envoy budget retries: every item sent earns `budget` of a copy
(at most BURST copies saved), and a copy spends one. When every replica is slow because the site
is overloaded, unbudgeted copies would only add to the load that made them late (a retry storm);
with the budget, they add at most `budget` of it. A copy the budget refuses is counted (throttled).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from jellybean.agents import topics
from jellybean.agents.items import Item, MessageError
from jellybean.agents.messages import ResendRun
from jellybean.errors import JellyBeanError

MAX_PENDING = 20000
BURST = 20.0         # copies the budget may save up while nothing is late
RESENT = "resent"    # meta on a re-sent copy (sticky): the operators it was re-sent to
SERVED = "served"    # meta on an acknowledgement: the operator that served the item

Key = tuple[str, str, int]


@dataclass
class _Pending:
    edge: str
    operator: str
    item: Item
    due: float
    left: int
    every_s: float


def acknowledgement(operator: str, output: Item) -> tuple[str, str, Item] | None:
    """(the producer's site, the producer, the acknowledgement) for `operator`'s `output`, or None
    where a source fed it (sources keep no copies) or the trace does not say who sent it."""
    trace = output.trace
    at = next((j for j in range(len(trace) - 1, -1, -1) if len(trace[j]) > 1 and trace[j][1] == operator), None)
    if not at:
        return None
    site, producer = trace[at - 1][0], trace[at - 1][1]
    try:
        topics.check_name(str(site), "site name")
        topics.check_name(str(producer), "operator name")
    except JellyBeanError:
        return None
    ack = Item(stream=output.stream, frame=output.frame, capture_ts=output.capture_ts, kind="seen",
               meta={SERVED: operator}, session=output.session)
    return str(site), str(producer), ack


def served(ack: Item, topic: str) -> str:
    """The operator an acknowledgement on `topic` speaks for."""
    name = ack.meta.get(SERVED)
    if ack.kind != "seen" or not isinstance(name, str) or not name:
        raise MessageError(f"{topic}: an acknowledgement needs kind 'seen' and meta '{SERVED}' naming the operator "
                           f"that served the item (got kind {ack.kind!r}, {SERVED} {name!r}); the sender is not a "
                           "JellyBean agent of this version")
    return name


class Resender:
    def __init__(self, wake: threading.Event | None = None) -> None:
        self.runs: dict[str, ResendRun] = {}
        self._pending: OrderedDict[tuple[str, Key], _Pending] = OrderedDict()
        self._lock = threading.Lock()
        self.wake = wake or threading.Event()   # set when the table stops being empty
        self.resent = 0      # copies sent again
        self.seen = 0        # acknowledgements that found an item waiting
        self.forgotten = 0   # copies dropped from a full table (those items can no longer be re-sent)
        self.throttled = 0   # copies the budget refused
        self._tokens: dict[str, float] = {}

    @property
    def active(self) -> bool:
        return bool(self.runs)

    def update(self, runs: dict[str, ResendRun]) -> None:
        with self._lock:
            self.runs = dict(runs)
            self._tokens = {op: self._tokens.get(op, BURST) for op in self.runs}
            for key in [k for k in self._pending if k[0] not in self.runs]:
                del self._pending[key]

    def sent(self, edge: str, operator: str, item: Item, now: float | None = None) -> None:
        """`item` went to `operator`: keep a copy until a replica says it served it."""
        run = self.runs.get(operator)
        if run is None or item.dropped is not None:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            was_empty = not self._pending
            key = (operator, item.key)
            if key in self._pending:
                return
            self._tokens[operator] = min(BURST, self._tokens.get(operator, 0.0) + run.budget)
            self._pending[key] = _Pending(edge, operator, item, now + run.after_ms / 1000.0, run.times,
                                          run.after_ms / 1000.0)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
                self.forgotten += 1
        if was_empty:
            self.wake.set()

    def acknowledged(self, operator: str, key: Key) -> bool:
        """A replica served `key` for `operator`; True when it was waiting here."""
        with self._lock:
            if self._pending.pop((operator, key), None) is None:
                return False
            self.seen += 1
            return True

    def due(self, now: float | None = None) -> list[tuple[str, str, Item]]:
        """(edge, operator, copy) for every item whose time ran out; each copy is marked RESENT."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            for key, p in list(self._pending.items()):
                if p.due > now:
                    continue
                p.left -= 1
                if p.left <= 0:
                    del self._pending[key]
                else:
                    p.due = now + p.every_s
                if self._tokens.get(p.operator, 0.0) < 1.0:
                    self.throttled += 1
                    continue
                self._tokens[p.operator] -= 1.0
                marked = sorted({*p.item.meta.get(RESENT, []), p.operator})
                copy = replace(p.item, meta={**p.item.meta, RESENT: marked}, trace=[list(t) for t in p.item.trace])
                out.append((p.edge, p.operator, copy))
            self.resent += len(out)
        return out

    def next_due(self) -> float | None:
        with self._lock:
            return min((p.due for p in self._pending.values()), default=None)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"resent": self.resent, "seen": self.seen, "waiting": len(self._pending),
                    "forgotten": self.forgotten, "throttled": self.throttled}
