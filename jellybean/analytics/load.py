"""Filling the track store from boxes: a CityFlow-layout dataset's gt files, or what the replay sink
delivered (the tracker's boxes and ids per frame).

A box becomes an observation of its track at the camera's time for the frame (offset + (frame-1)/fps).
Its ground position is the bottom centre of the box mapped through the inverse of the camera's
calibration homography (world metres -> pixels, so H⁻¹ recovers metres; see jellybean.replay.scene);
speed is the distance between a track's neighbouring observations over their time (the mean of the
steps before and after, at the ends the one step there is); dwell is the time since the track's
current stop (speed < 1 m/s) began. A track seen once has no speed and is left out. The scenario is
the intersection, the camera the approach, the cameras' frame rate the store's ``hz``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jellybean.analytics import store
from jellybean.analytics.errors import AnalyticsError
from jellybean.analytics.features import STOP_SPEED

EMPTY_HINT = "nothing to load"


def _ground(h: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inverse = np.linalg.inv(h)
    p = inverse @ np.vstack([u, v, np.ones_like(u)])
    return p[0] / p[2], p[1] / p[2]


def observations(intersection: str, approach: str, frames, ids, boxes, homography: np.ndarray, fps: float,
                 offset_s: float) -> dict[str, np.ndarray]:
    """One camera's boxes (``boxes`` [n, 4]: left, top, width, height in pixels) as store columns."""
    frames = np.asarray(frames, dtype=float)
    ids = np.asarray(ids, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    order = np.lexsort((frames, ids))
    frames, ids, boxes = frames[order], ids[order], boxes[order]
    t = offset_s + (frames - 1) / fps
    x, y = _ground(homography, boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3])
    same = ids[1:] == ids[:-1]
    dt = np.diff(t)
    step = np.full(dt.shape, np.nan)
    ok = same & (dt > 0)
    step[ok] = np.hypot(np.diff(x), np.diff(y))[ok] / dt[ok]
    before = np.concatenate([[np.nan], step])
    after = np.concatenate([step, [np.nan]])
    both = np.vstack([before, after])
    seen = np.isfinite(both).sum(axis=0)
    keep = seen > 0
    speed = np.where(keep, np.nansum(np.where(np.isfinite(both), both, 0.0), axis=0) / np.maximum(seen, 1), 0.0)
    # dwell: time since the current stopped run of the track began
    stopped = speed < STOP_SPEED
    continues = np.concatenate([[False], same & stopped[:-1]])
    starts = stopped & ~continues
    index = np.maximum.accumulate(np.where(starts, np.arange(t.size), 0))
    dwell = np.where(stopped, t - t[index], 0.0)
    n = int(keep.sum())
    return {"intersection": np.full(n, intersection, dtype=object), "approach": np.full(n, approach, dtype=object),
            "track_id": ids[keep], "t": t[keep], "speed": speed[keep].astype(np.float32),
            "dwell": dwell[keep].astype(np.float32)}


def concat(parts: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if len(p["t"])]
    if not parts:
        return {name: np.array([], dtype=object if kind == "VARCHAR" else float) for name, kind in store.COLUMNS.items()}
    return {name: np.concatenate([p[name] for p in parts]) for name in store.COLUMNS}


def _rate(cameras) -> float:
    rates = sorted({float(c.fps) for c in cameras})
    if len(rates) != 1:
        names = ", ".join(f"{c.name} {c.fps:g}" for c in cameras)
        raise AnalyticsError(f"the cameras record at different rates ({names} fps); a store holds one observation "
                             "rate: load cameras of one rate per store")
    return rates[0]


def from_dataset(root: Path | str, scenario: str | None = None) -> tuple[dict[str, np.ndarray], float]:
    """(the observations of every camera with gt in the dataset (or one scenario), the cameras' fps)."""
    from jellybean.errors import SpecError
    from jellybean.replay.cityflow import open_dataset

    root = Path(root)
    dataset = open_dataset(root)
    scenarios = [dataset.scenario(scenario)] if scenario else list(dataset.scenarios)
    cameras = [c for s in scenarios for c in s.cameras if c.has_gt]
    if not cameras:
        raise AnalyticsError(f"{root}: no camera with ground truth (cNNN/gt/gt.txt) to load; give a train or "
                             "validation split (`jellybean scene` writes one)")
    problems = [p.message for c in cameras for p in c.problems if p.kind in ("gt", "video", "timestamp")]
    if problems:
        raise SpecError(problems)
    parts = []
    for cam in cameras:
        rows = cam.gt()
        parts.append(observations(cam.scenario, cam.name, [r.frame for r in rows], [r.id for r in rows],
                                  [[r.left, r.top, r.width, r.height] for r in rows], cam.homography(), cam.fps,
                                  cam.offset_s))
    return concat(parts), _rate(cameras)


def from_delivered(delivered: dict, scenario) -> tuple[dict[str, np.ndarray], float]:
    """(the observations in the sink's delivered items (``SinkCollector.snapshot()``), the fps)."""
    by_camera: dict[str, list] = {}
    for item in delivered.values():
        if item.dropped:
            continue
        for box, ident in zip(item.boxes, item.ids):
            by_camera.setdefault(item.stream, []).append((item.frame, ident, box[:4]))
    # replay names a stream by the camera's key (train/S01/c001)
    known = {c.key: c for c in scenario.cameras}
    unknown = sorted(set(by_camera) - set(known))
    if unknown:
        raise AnalyticsError(f"delivered tracks from {', '.join(unknown)}, not a camera of {scenario.split}/"
                             f"{scenario.name} ({', '.join(known)}); store the tracks of the scenario replayed")
    cameras = [known[key] for key in sorted(by_camera)]
    parts = []
    for cam in cameras:
        rows = by_camera[cam.key]
        parts.append(observations(scenario.name, cam.name, [r[0] for r in rows], [r[1] for r in rows],
                                  [r[2] for r in rows], cam.homography(), cam.fps, cam.offset_s))
    return concat(parts), (_rate(cameras) if cameras else float(scenario.cameras[0].fps or 10.0))


def write(path: Path | str, columns: dict[str, np.ndarray], hz: float, seed: int = 0) -> int:
    """Add the observations to the store at ``path`` (made if missing, for ``hz``); the rows added."""
    path = Path(path)
    if len(columns["t"]) == 0:
        raise AnalyticsError(f"{path}: {EMPTY_HINT}: no track was seen twice")
    if path.exists():
        con = store.connect(path, read_only=False)
        if abs(store.hz_of(con) - hz) > 1e-9:
            held = store.hz_of(con)
            con.close()
            raise AnalyticsError(f"{path}: holds observations at {held:g} per second, these are at {hz:g}; "
                                 "write them to another store")
    else:
        con = store.create(path, hz)
    try:
        return store.insert(con, columns, seed=seed)
    finally:
        con.close()
