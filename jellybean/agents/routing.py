"""Where an item goes next: the plan's routing weights turned into per-item choices.

How an operator must be fed decides how a destination is picked:
- "item" (stateless): smooth weighted round-robin, so the split follows the weights exactly over
  any window (nginx's algorithm);
- "stream" (a tracker): weighted rendezvous hashing of the stream, so every frame of a stream goes
  to the same site, streams split by weight, and a weight change moves as few streams as possible;
- "global" (association): everything to one site, the one with the largest weight.
Weights are data: `update` swaps them at run time without touching the operators.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Collection
from typing import Literal

Keyed = Literal["item", "stream", "global"]


def _unit_hash(text: str) -> float:
    """A stable hash of `text` in (0, 1): the same on every machine and Python run."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / (2 ** 64 + 2)


class WeightedChoice:
    """Picks one of several destinations by weight, in the way `keyed` requires."""

    def __init__(self, weights: dict[str, float], keyed: Keyed = "item") -> None:
        self.keyed = keyed
        self._lock = threading.Lock()
        self._weights: dict[str, float] = {}
        self._current: dict[str, float] = {}
        self.update(weights)

    def update(self, weights: dict[str, float]) -> None:
        positive = {k: float(w) for k, w in sorted(weights.items()) if w > 1e-12}
        with self._lock:
            self._weights = positive
            self._current = {k: self._current.get(k, 0.0) for k in positive}

    @property
    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def pick(self, stream: str, avoid: Collection[str] = ()) -> str | None:
        """The destination for the next item of `stream`; with "item", none in `avoid` while
        another is left (the avoided ones keep their credit, so they come next)."""
        if not self._weights:
            return None
        if self.keyed == "global":
            return max(self._weights.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if self.keyed == "stream":
            # Weighted rendezvous: score = -w / ln(u); the highest score wins.
            return max(self._weights, key=lambda k: -self._weights[k] / math.log(_unit_hash(f"{stream}|{k}")))
        with self._lock:
            total = sum(self._weights.values())
            for k, w in self._weights.items():
                self._current[k] += w
            allowed = [k for k in self._current if k not in avoid] or list(self._current)
            best = max(allowed, key=lambda k: (self._current[k], k))
            self._current[best] -= total
            return best


class Router:
    """Next hops for the outputs of operators run at one site (or for sources at their sites).

    `routing[edge][from_site]` = {to_site: weight} is the plan's per-edge routing; when there is no
    row for this site (a re-plan moved the upstream away, or an item is being re-homed), the
    downstream operator's placements are used instead."""

    def __init__(self, routing: dict[str, dict[str, dict[str, float]]], placements: dict[str, dict[str, float]],
                 keyed: dict[str, Keyed]) -> None:
        self._choices: dict[tuple[str, str], WeightedChoice] = {}
        self._lock = threading.Lock()
        self.update(routing, placements, keyed)

    def update(self, routing: dict[str, dict[str, dict[str, float]]], placements: dict[str, dict[str, float]],
               keyed: dict[str, Keyed]) -> None:
        with self._lock:
            self.routing = routing
            self.placements = placements
            self.keyed = keyed
            for (edge, site), choice in list(self._choices.items()):
                weights = self._weights(edge, site)
                if weights:
                    choice.update(weights)
                else:
                    del self._choices[(edge, site)]

    def _weights(self, edge: str, site: str) -> dict[str, float]:
        row = self.routing.get(edge, {}).get(site)
        if row and sum(row.values()) > 0:
            return row
        downstream = edge.split("->", 1)[-1]
        return self.placements.get(downstream, {})

    def next_site(self, edge: str, site: str, stream: str) -> str | None:
        """The site that should process `edge`'s downstream for this item, None if nowhere."""
        with self._lock:
            choice = self._choices.get((edge, site))
            if choice is None:
                weights = self._weights(edge, site)
                if not weights:
                    return None
                keyed = self.keyed.get(edge.split("->", 1)[-1], "item")
                choice = self._choices[(edge, site)] = WeightedChoice(weights, keyed)
        return choice.pick(stream)


class WorkerSpread:
    """Which of a site's agents gets the next item of a protected operator (Assignment.direct).

    Smooth weighted round-robin per (operator, site) over the agents' worker counts, except that
    none of the last k - 1 agents picked is picked again while another can be: any k items in a
    row, and so the k members of a coding group, land on k different workers where there are k.
    The weights hold over time as long as no agent has more than 1/k of them (ParM spreads a
    group in the same way; an agent with more gets 1/k)."""

    def __init__(self) -> None:
        self._choices: dict[tuple[str, str], WeightedChoice] = {}
        self._recent: dict[tuple[str, str], list[str]] = {}
        self._k: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, direct: dict[str, dict[str, dict[str, float]]], k: dict[str, int]) -> None:
        """`direct` as Assignment.direct; `k[operator]`: the size of its coding groups."""
        with self._lock:
            wanted = {(op, site): {a: float(w) for a, w in agents.items()}
                      for op, sites in direct.items() for site, agents in sites.items()}
            for key in set(self._choices) - set(wanted):
                del self._choices[key], self._recent[key]
            for key, agents in wanted.items():
                # New weights start a fresh rotation: credit carried over can repeat an agent.
                if key not in self._choices or self._choices[key].weights != agents:
                    self._choices[key], self._recent[key] = WeightedChoice(agents), []
            self._k = dict(k)

    def pick(self, operator: str, site: str) -> str | None:
        """The agent at `site` to address, None when the site's shared topic serves (one agent)."""
        key = (operator, site)
        with self._lock:
            choice = self._choices.get(key)
            if choice is None:
                return None
            recent = self._recent[key]
            best = choice.pick("", avoid=recent)
            recent.append(best)
            del recent[:max(0, len(recent) - (self._k.get(operator, 2) - 1))]
            return best
