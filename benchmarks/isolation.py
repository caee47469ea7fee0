"""What the planner benchmarks share: every instance in its own process, and how figures print.

A crash in a native solver then costs one row, not the run.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def _quiet() -> None:
    """In the worker process: drop what native solvers print on stdout (HiGHS's banner)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)


class Isolated:
    """Calls ``fn`` in a spawned worker process; ``crashed`` (same arguments) answers when it dies."""

    def __init__(self, fn: Callable[..., Any], crashed: Callable[..., Any]) -> None:
        self.fn, self.crashed = fn, crashed
        self.pool: ProcessPoolExecutor | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet)
        try:
            return self.pool.submit(self.fn, *args, **kwargs).result()
        except BrokenProcessPool:
            self.pool = None
            return self.crashed(*args, **kwargs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
