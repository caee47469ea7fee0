"""Load traces: how the offered load varies over a replay (`replay --trace TRACE.csv`).

A trace is a CSV with a header row: ``t`` (seconds since the replay's clock started) and one of

- ``multiplier``: the recorded frame rate times this (> 0): 2 plays the video twice as fast, so
  the deployment sees twice the frames per second;
- ``cameras``: how many cameras publish (the first N in name order; the others' frames are held
  back and counted as such).

Each row holds until the next; the first row is at t = 0. Comments (``#``) and blank lines are
skipped. Malformed rows are refused with the file, line, field and the fix.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jellybean.errors import JellyBeanError

Mode = Literal["multiplier", "cameras"]


@dataclass(frozen=True)
class LoadTrace:
    path: str
    mode: Mode
    times: tuple[float, ...]
    values: tuple[float, ...]

    def value_at(self, t: float) -> float:
        """The row in effect at ``t`` seconds (the last one for t past the end)."""
        return self.values[max(0, bisect.bisect_right(self.times, t) - 1)]

    def cameras_at(self, t: float) -> int:
        if self.mode != "cameras":
            raise JellyBeanError(f"{self.path}: a multiplier trace says nothing about cameras")
        return int(self.value_at(t))

    def wall_time(self, media_s: float) -> float:
        """Seconds since the start at which the video reaches ``media_s`` seconds: the clock runs
        at the multiplier in effect (a cameras trace keeps the recorded pace)."""
        if self.mode != "multiplier":
            return media_s
        media = 0.0
        for i, (start, m) in enumerate(zip(self.times, self.values)):
            end = self.times[i + 1] if i + 1 < len(self.times) else math.inf
            if media + m * (end - start) >= media_s:
                return start + (media_s - media) / m
            media += m * (end - start)
        return math.inf  # not reached: the last row runs for ever

    def offered(self, recorded_fps: float, cameras: int, t: float) -> float:
        """Frames per second the replay offers at ``t``, from the recorded rate of all ``cameras``."""
        if self.mode == "multiplier":
            return recorded_fps * cameras * self.value_at(t)
        return recorded_fps * min(cameras, self.cameras_at(t))


def _number(text: str, where: str, field: str, fix: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise JellyBeanError(f"{where}: field '{field}' is '{text}', not a number; {fix}") from None
    if not math.isfinite(value):
        raise JellyBeanError(f"{where}: field '{field}' is '{text}', not a finite number; {fix}")
    return value


def read_trace(path: Path | str) -> LoadTrace:
    """Read and check a trace file (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise JellyBeanError(f"{path}: cannot read the trace ({exc.strerror}); give a CSV with a header "
                             "`t,multiplier` or `t,cameras`") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise JellyBeanError(f"{path}: empty trace; give a header `t,multiplier` or `t,cameras` and rows")
    rows = list(csv.reader(line for _, line in lines))
    header = [h.strip() for h in rows[0]]
    modes = [h for h in header if h in ("multiplier", "cameras")]
    if "t" not in header or len(modes) != 1 or len(header) != 2:
        raise JellyBeanError(f"{path}:{lines[0][0]}: header is '{','.join(header)}'; give exactly `t,multiplier` or "
                             "`t,cameras`")
    mode: Mode = modes[0]  # type: ignore[assignment]
    ti, vi = header.index("t"), header.index(mode)
    times: list[float] = []
    values: list[float] = []
    for (n, _), row in zip(lines[1:], rows[1:]):
        where = f"{path}:{n}"
        if len(row) != 2:
            raise JellyBeanError(f"{where}: {len(row)} field(s); give two, `t` and `{mode}`")
        t = _number(row[ti].strip(), where, "t", "give seconds since the start, e.g. 30")
        v = _number(row[vi].strip(), where, mode, "give e.g. 1.5" if mode == "multiplier" else "give e.g. 4")
        if t < 0 or (times and t <= times[-1]):
            raise JellyBeanError(f"{where}: t = {t:g} after {times[-1] if times else 'the start'}; give times that "
                                 "start at 0 and increase")
        if not times and t != 0:
            raise JellyBeanError(f"{where}: the first row is at t = {t:g}; start the trace at t = 0")
        if mode == "multiplier" and v <= 0:
            raise JellyBeanError(f"{where}: multiplier {v:g}; give a positive multiple of the recorded rate (to "
                                 "switch cameras off, use a `cameras` trace)")
        if mode == "cameras" and (v < 0 or v != int(v)):
            raise JellyBeanError(f"{where}: cameras {v:g}; give a whole number of cameras, 0 or more")
        times.append(t)
        values.append(v)
    if not times:
        raise JellyBeanError(f"{path}: a header but no rows; give at least `0,1`")
    return LoadTrace(str(path), mode, tuple(times), tuple(values))
