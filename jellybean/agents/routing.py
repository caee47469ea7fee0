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

    def pick(self, stream: str) -> str | None:
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
            best = max(self._current, key=lambda k: (self._current[k], k))
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
