"""Reachability over a directed graph given as each node's successors (links between sites or
locations): the one walk the planner, the broker's grants and the replay's report share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def reachable(nexts: Mapping[str, Iterable[str]], start: str) -> set[str]:
    """``start`` and every node a path of ``nexts`` leads to from it."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in nexts.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
