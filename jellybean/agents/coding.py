"""An agent's part in its assignment's redundancy (ParM, `Assignment.parity`).

- As a producer: every item it sends to a protected operator also goes into that operator's
  coding group; each full group (or one that waited `group_wait_ms`, or the last of a batch the
  producer emitted at once, since the next batch is a batch period away) becomes a parity query,
  sent to the parity operator. The coding (JPEG decode, tiles, encode) runs in `tick`, on the
  agent's coding thread, so the producer's items leave without waiting for it.
- As a consumer: outputs of a protected operator pass through its decoder on their way in, parity
  outputs stop there, and an output missing `decode_wait_ms` after the rest of its group is
  rebuilt and handed to the consumer like any item (the original, if it comes, is a duplicate).
"""

from __future__ import annotations

import logging
import threading
import uuid

from jellybean.agents.items import Item
from jellybean.agents.messages import Assignment, ParityRun
from jellybean.parity.groups import GroupDecoder, GroupEncoder, is_parity, is_query
from jellybean.parity.wire import wire_encoder

log = logging.getLogger(__name__)


class Coding:
    def __init__(self, agent: str, site: str) -> None:
        self.agent, self.site = agent, site
        self.session = uuid.uuid4().hex[:12]
        self.runs: dict[str, ParityRun] = {}
        self.encoders: dict[str, GroupEncoder] = {}                # protected operator -> its group here
        self.decoders: dict[tuple[str, str], GroupDecoder] = {}    # (protected, consumer)
        self._parity_of: dict[str, str] = {}                       # parity operator -> protected
        self._producer: dict[str, str] = {}                        # protected -> the operator feeding it here
        self._lock = threading.Lock()
        self.wake = threading.Event()      # set when a group fills or an output comes: tick may have work

    @property
    def active(self) -> bool:
        return bool(self.runs)

    def update(self, a: Assignment) -> list[tuple[str, str, Item]]:
        """Follow a new assignment; returns the parity queries of groups it ends (edge, operator, query)."""
        flushed = []
        with self._lock:
            for op, enc in list(self.encoders.items()):
                run = a.parity.get(op)
                if run is None or run != self.runs.get(op):
                    flushed += [(self._edge(op), self.runs[op].operator, q) for q in enc.due(force=True)]
                    del self.encoders[op]
            self.runs = dict(a.parity)
            self._parity_of = {run.operator: op for op, run in self.runs.items()}
            for op, run in self.runs.items():
                if op not in self.encoders:
                    self.encoders[op] = GroupEncoder(run.k, wire_encoder(run.encoder, run.k), source=self.agent,
                                                     session=self.session, max_wait_s=run.group_wait_ms / 1000.0)
                for consumer in a.downstream.get(op, []):
                    if (op, consumer) not in self.decoders:
                        self.decoders[op, consumer] = GroupDecoder(op, site=self.site,
                                                                   wait_s=run.decode_wait_ms / 1000.0)
            for key in [k for k in self.decoders if k[0] not in self.runs]:
                del self.decoders[key]
        return flushed

    def _edge(self, op: str) -> str:
        return f"{self._producer.get(op, '*')}->{self.runs[op].operator}"

    def encode(self, producer: str, operator: str, item: Item) -> bool:
        """`producer`'s `item` is being sent to `operator`: True when it fills a group, whose
        parity query `tick` then codes and returns."""
        with self._lock:
            enc = self.encoders.get(operator)
            if enc is not None:
                self._producer[operator] = producer
        if enc is None:
            return False
        if enc.offer(item):
            self.wake.set()
            return True
        return False

    def seal(self, operator: str) -> None:
        """The producer sent a batch of items to `operator`: its partial group is coded now rather
        than left to wait a batch period (group_wait_ms) for the next batch to fill it."""
        with self._lock:
            enc = self.encoders.get(operator)
        if enc is not None and enc.seal():
            self.wake.set()

    def arrived(self, consumer: str, item: Item) -> bool:
        """An item for `consumer` here. True when the decoder keeps it (a parity output)."""
        producer = item.trace[-1][1] if item.trace and len(item.trace[-1]) > 1 else None
        with self._lock:
            if consumer in self._parity_of:
                return False   # a parity query for the parity worker here
            if is_parity(item) or is_query(item):
                # A parity output, or a query dropped on its way (a tombstone keeps its kind; with
                # several protected operators its counts may land on another one's decoder).
                protected = self._parity_of.get(producer or "") or next(iter(self._parity_of.values()), "")
                dec = self.decoders.get((protected, consumer))
                if dec is not None:
                    dec.parity(item)
                    self.wake.set()
                return True
            dec = self.decoders.get((producer, consumer)) if producer in self.runs else None
        if dec is not None:
            dec.data(item)
            self.wake.set()
        return False

    def tick(self) -> tuple[list[tuple[str, str, Item]], list[tuple[str, Item]]]:
        """(parity queries of groups full or waited long enough, rebuilt outputs per consumer)."""
        with self._lock:
            encoders = [(self._edge(op), self.runs[op].operator, enc) for op, enc in self.encoders.items()]
            decoders = list(self.decoders.items())
        queries = [(edge, name, q) for edge, name, enc in encoders for q in enc.due()]
        rebuilt = [(consumer, item) for (_, consumer), dec in decoders for item in dec.due()]
        return queries, rebuilt

    def next_due(self) -> float | None:
        """When `tick` next has work (monotonic seconds), None when nothing waits."""
        with self._lock:
            parts = [*self.encoders.values(), *self.decoders.values()]
        times = [t for p in parts if (t := p.next_due()) is not None]
        return min(times) if times else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            decs = list(self.decoders.values())
        return {"queries": sum(e.sent for e in self.encoders.values()),
                "parity outputs": sum(d.counts.parity for d in decs),
                "rebuilt": sum(d.counts.rebuilt for d in decs),
                "unrecoverable": sum(d.counts.unrecoverable for d in decs),
                "late_parity": sum(d.counts.late_parity for d in decs),
                "dropped_parity": sum(d.counts.dropped_parity for d in decs)}
