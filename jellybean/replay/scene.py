"""Synthetic traffic scenes written in the AI City Challenge (CityFlow) multi-camera tracking layout.

The real AI City data cannot be fetched here, so this writes a small, deterministic stand-in that
later work trains small detector / re-ID models on and replays through the system:

    DIR/<split>/<S0X>/<cNNN>/vdo.avi            MJPG in AVI, 10 fps (one camera may run at 8 fps)
    DIR/<split>/<S0X>/<cNNN>/roi.jpg            white where the road is, black elsewhere
    DIR/<split>/<S0X>/<cNNN>/calibration.txt    `Homography matrix: a b c;d e f;g h i`
    DIR/<split>/<S0X>/<cNNN>/gt/gt.txt          `frame,id,left,top,width,height,1,-1,-1,-1`
    DIR/cam_timestamp/<S0X>.txt                 `cNNN <start offset seconds>`
    DIR/cam_framenum/<S0X>.txt                  `cNNN <number of frames>`

The world. A straight east-west arterial on the ground plane (metres; x along the road, y across
it, north = +y): two lanes each way (eastbound at y = -1.75, -5.25; westbound at +1.75, +5.25),
sidewalks, lawns, trees and building roofs beside it, and one signalised intersection with a cross
street every ~130 m (stop lines, crosswalks). The road extends 30 m beyond the outermost camera view
so that vehicles enter at the ends out of sight. Traffic is simulated before it is drawn: vehicles
(car, van, truck, bus; each with its own size, colour, desired speed and acceleration) arrive at
both ends as a Poisson stream per lane, follow the vehicle ahead with the Intelligent Driver Model
and stop at red lights (a yellow light only stops those that can brake comfortably). No lane
changes; overtaking happens between lanes. The simulation warms up before t = 0 so the road is
already in steady traffic when the cameras start.

The cameras. N cameras stand along the arterial, each on its south or north side (at random,
mostly south), each seeing ~45 m of road along its bottom edge (wider towards the top: mild
perspective) with ~30 % overlap between neighbours. `calibration.txt` holds H, mapping world
ground-plane metres (x, y, 1) to image pixels (u, v, 1) (the direction of the real files, which map
GPS to pixels); a vehicle's footprint is projected with exactly this H, so the bottom edge of its
box is the image of its near ground edge and H^-1 of a box's bottom centre recovers its ground
position. Each camera starts recording at a small offset (0-2 s, `cam_timestamp`): frame k
(1-based) of camera c is the world at t = offset_c + (k - 1) / fps_c.

Drawing. A vehicle's box is the bounding box of its projected footprint, raised by its height times
a fixed tilt (a pseudo-3D view from above and the side). It is drawn as a filled rounded rectangle:
roof in the upper part with a darker cabin band, windshield and rear window, the near side in shade
below with side windows and wheels, head- and tail-lights, an optional accent stripe and a small
per-vehicle low-frequency texture (identity cues for re-ID). Vehicles are painted far to near
(painter's order by box bottom), so near vehicles hide far ones. The background is a textured world
raster (asphalt grain and patches, cracks, worn markings, concrete slabs, lawns, trees, roofs)
warped into each camera; each camera has its own lighting (gain, tint, gradient, vignette), and
each frame its own sensor noise and exposure flicker, so a detector cannot key on a flat colour.

Ground truth. Each camera's gt box is the drawn box clipped to the frame, with the vehicle's global
id (ids are shared across cameras and numbered 1.. in order of first arrival among the vehicles that
appear in any gt). Occluded boxes are kept whole, as in AI City, unless the vehicle is not visible
enough: a box is dropped when less than 30 % of its full (unclipped) box area is visible (more than
~70 % hidden behind nearer vehicles or outside the frame), or when its clipped width or height is
under `min_box_side` pixels (max(4, min(width, height) / 45): 8 px at 640x360, 4 px at 160x96).

Codec. MJPG in .avi through OpenCV's built-in MJPEG writer (`cv2.CAP_OPENCV_MJPEG`, no FFmpeg needed
to write); it round-trips through `cv2.VideoCapture` in opencv-python-headless with exact fps (10 and
8) and frame counts, and intra-only frames make seeking exact.

Determinism. Everything random comes from numpy Generators derived from the seed (per-frame noise
from (seed, camera, frame), so any frame can be rendered alone); the same seed gives the same gt
bytes and the same decoded frames.
"""

from __future__ import annotations

import math
import re
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from jellybean.errors import JellyBeanError

SPLITS = ("train", "validation", "test")
FOURCC = "MJPG"

# --- the world (metres on the ground plane) ---------------------------------------------------
ROAD_HALF = 7.0                 # two 3.5 m lanes each way
SIDEWALK_OUTER = 10.0
WORLD_HALF = 26.0               # extent of the world raster across the road
CROSS_HALF = 5.5                # half width of a cross street
STOP_BACK = 3.0                 # stop line this far before the cross street (crosswalk in between)
LANES = ((+1, -1.75), (+1, -5.25), (-1, 1.75), (-1, 5.25))  # (direction along x, centre y)
ROAD_MARGIN = 30.0              # road beyond the outermost view: vehicles enter out of sight
INTERSECTION_EVERY = 130.0

# --- cameras ---------------------------------------------------------------------------------
NEAR_Y, FAR_Y = 11.0, 14.0      # ground seen at the bottom / top image edge, from the road axis
VIEW_NEAR_M = 45.0              # metres of road along the bottom edge
FAR_WIDEN = 1.35                # the top edge sees this much more road (mild perspective)
OVERLAP = 0.3                   # fraction of a view shared with the next camera
TILT = 0.5                      # image height of a vehicle's sides per metre of height, vs. ground
MAX_OFFSET_S = 2.0

# --- traffic -----------------------------------------------------------------------------------
DT = 0.05
IDM_T, IDM_S0, IDM_B, HARD_BRAKE = 1.4, 2.0, 2.0, 5.0
LANE_RATE = (0.16, 0.28)        # vehicle arrivals per second per lane
YELLOW_S = 2.5

VISIBLE_MIN = 0.3               # keep a gt box when at least this much of it is visible


@dataclass(frozen=True)
class _Kind:
    name: str
    weight: float
    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]
    speed: tuple[float, float]
    accel: float


KINDS = (
    _Kind("car", 0.64, (4.0, 4.9), (1.7, 1.9), (1.4, 1.6), (11.0, 16.0), 2.0),
    _Kind("van", 0.18, (4.8, 5.6), (1.9, 2.1), (1.9, 2.4), (10.0, 14.0), 1.6),
    _Kind("truck", 0.10, (6.5, 9.5), (2.3, 2.5), (2.8, 3.4), (8.5, 12.0), 1.0),
    _Kind("bus", 0.08, (10.5, 12.2), (2.5, 2.55), (3.0, 3.2), (8.5, 11.0), 1.0),
)

# BGR, with weights close to the world's shares of car colours.
CAR_COLOURS = (
    ((236, 238, 240), 24), ((28, 28, 30), 18), ((118, 120, 122), 13), ((66, 68, 70), 6),
    ((192, 194, 196), 11), ((150, 70, 30), 6), ((90, 40, 20), 3), ((40, 40, 190), 8),
    ((40, 30, 110), 2), ((60, 100, 40), 2), ((160, 190, 205), 2), ((50, 75, 110), 2),
    ((40, 200, 235), 1), ((30, 120, 230), 1), ((190, 150, 90), 1),
)
BUS_COLOURS = ((236, 238, 240), (40, 200, 235), (150, 70, 30), (40, 40, 190), (60, 130, 50))
CARGO_COLOURS = ((232, 234, 236), (192, 194, 196), (140, 142, 144), (160, 190, 205), (40, 40, 190),
                 (150, 70, 30), (30, 120, 230), (60, 100, 40))
ACCENT_COLOURS = ((20, 20, 20), (236, 238, 240), (40, 40, 190), (30, 160, 230), (150, 70, 30))
GLASS = (58, 46, 38)
SIDE_GLASS = (80, 68, 58)
TYRE = (22, 22, 24)
HEADLIGHT = (200, 235, 245)
TAILLIGHT = (30, 30, 170)


# --- configuration and results -----------------------------------------------------------------


@dataclass(frozen=True)
class SceneConfig:
    """One scenario to write. `slow_camera` is the 1-based number (within the scenario) of one
    camera that records at `slow_fps` (8 fps, as c015 does in the real data)."""

    cameras: int = 4
    seconds: float = 10.0
    seed: int = 0
    width: int = 640
    height: int = 360
    fps: float = 10.0
    scenario: str = "S01"
    split: str = "train"
    slow_camera: int | None = None
    slow_fps: float = 8.0
    first_camera: int = 1
    overwrite: bool = False

    def check(self) -> None:
        """Raise a JellyBeanError naming every bad value and what to use instead."""
        bad = []
        if self.cameras < 1:
            bad.append(f"--cameras: must be at least 1 (got {self.cameras})")
        if self.first_camera < 1:
            bad.append(f"--first-camera: must be at least 1 (got {self.first_camera})")
        elif self.cameras >= 1 and self.first_camera + self.cameras - 1 > 999:
            bad.append(f"--cameras/--first-camera: camera names are c001..c999; "
                       f"c{self.first_camera + self.cameras - 1} is out of range")
        if not (self.seconds > 0) or math.isinf(self.seconds):
            bad.append(f"--seconds: must be a number greater than 0 (got {self.seconds:g})")
        if self.seed < 0:
            bad.append(f"--seed: must be 0 or more (got {self.seed})")
        if not 64 <= self.width <= 4096:
            bad.append(f"--width: must be between 64 and 4096 pixels (got {self.width})")
        if not 48 <= self.height <= 4096:
            bad.append(f"--height: must be between 48 and 4096 pixels (got {self.height})")
        for name, fps in (("--fps", self.fps), ("--slow-fps", self.slow_fps)):
            if not 1 <= fps <= 120:
                bad.append(f"{name}: must be between 1 and 120 frames per second (got {fps})")
        if not re.fullmatch(r"S\d{2,3}", self.scenario):
            bad.append(f"--scenario: expected a name like S01 (got '{self.scenario}')")
        if self.split not in SPLITS:
            bad.append(f"--split: unknown split '{self.split}'; use one of: {', '.join(SPLITS)}")
        if self.slow_camera is not None and not 1 <= self.slow_camera <= max(self.cameras, 1):
            bad.append(f"--slow-camera: must be a camera number from 1 to {self.cameras} (got {self.slow_camera})")
        if bad:
            raise JellyBeanError("\n".join(bad))

    @property
    def min_box_side(self) -> int:
        return max(4, round(min(self.width, self.height) / 45))

    def camera_names(self) -> list[str]:
        return [f"c{self.first_camera + i:03d}" for i in range(self.cameras)]

    def camera_fps(self, index: int) -> float:
        return self.slow_fps if self.slow_camera == index + 1 else self.fps

    def frame_counts(self) -> list[int]:
        return [max(1, int(round(self.seconds * self.camera_fps(i)))) for i in range(self.cameras)]


@dataclass(frozen=True)
class CameraSummary:
    name: str
    fps: float
    frames: int
    offset_s: float
    vehicles: int
    gt_boxes: int


@dataclass(frozen=True)
class SceneSummary:
    directory: Path
    scenario: str
    split: str
    cameras: tuple[CameraSummary, ...]
    vehicles: int
    gt_boxes: int

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras)


# --- world, vehicles, traffic --------------------------------------------------------------------


@dataclass(frozen=True)
class _Light:
    x: float
    green: float
    red: float
    offset: float

    def state(self, t: float) -> str:
        phase = (t + self.offset) % (self.green + YELLOW_S + self.red)
        return "G" if phase < self.green else ("Y" if phase < self.green + YELLOW_S else "R")


@dataclass(frozen=True)
class _World:
    x0: float                   # road start and end (vehicles enter and leave here)
    x1: float
    lights: tuple[_Light, ...]  # one per intersection
    buildings: tuple[tuple[float, float, float, float, tuple[int, int, int]], ...]
    trees: tuple[tuple[float, float, float], ...]
    cracks: tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False)
class _Vehicle:
    index: int                  # arrival order; the gt id is assigned later
    kind: str
    length: float
    width: float
    height: float
    lane: int
    lateral: float              # offset from the lane centre, metres
    colour: tuple[int, int, int]
    cargo: tuple[int, int, int] | None
    accent: tuple[int, int, int] | None
    texture: np.ndarray         # (3, 8, 3) float32, upsampled over the body
    v0: float
    accel: float


@dataclass(frozen=True, eq=False)
class _Track:
    vehicle: _Vehicle
    start: int                  # simulation step of xs[0]
    xs: np.ndarray              # world x per step

    @property
    def end(self) -> int:
        return self.start + len(self.xs) - 1


def _pick(rng: np.random.Generator, items, weights=None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(weights, float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def _jitter(rng: np.random.Generator, colour, amount: int = 10) -> tuple[int, int, int]:
    c = np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _make_vehicle(rng: np.random.Generator, index: int, lane: int) -> _Vehicle:
    kind = _pick(rng, KINDS, [k.weight for k in KINDS])
    if kind.name == "bus":
        colour = _jitter(rng, _pick(rng, BUS_COLOURS))
    else:
        colour = _jitter(rng, _pick(rng, [c for c, _ in CAR_COLOURS], [w for _, w in CAR_COLOURS]))
    cargo = _jitter(rng, _pick(rng, CARGO_COLOURS)) if kind.name == "truck" else None
    accent = _pick(rng, ACCENT_COLOURS) if rng.random() < 0.3 else None
    lum = rng.normal(0.0, 9.0, (3, 8, 1))
    texture = (lum + rng.normal(0.0, 3.0, (3, 8, 3))).astype(np.float32)
    inner = LANES[lane][1] in (-1.75, 1.75)
    v0 = float(rng.uniform(*kind.speed)) * (1.05 if inner else 0.95)
    return _Vehicle(
        index=index, kind=kind.name,
        length=float(rng.uniform(*kind.length)), width=float(rng.uniform(*kind.width)),
        height=float(rng.uniform(*kind.height)), lane=lane, lateral=float(np.clip(rng.normal(0, 0.15), -0.4, 0.4)),
        colour=colour, cargo=cargo, accent=accent, texture=texture, v0=v0, accel=kind.accel,
    )


def _make_world(rng: np.random.Generator, x0: float, x1: float) -> _World:
    n = max(1, round((x1 - x0) / INTERSECTION_EVERY))
    lights = []
    for i in range(n):
        x = x0 + (x1 - x0) * (i + 0.5) / n + float(rng.uniform(-8, 8))
        green, red = float(rng.uniform(12, 18)), float(rng.uniform(8, 12))
        lights.append(_Light(x=x, green=green, red=red, offset=float(rng.uniform(0, green + YELLOW_S + red))))

    def near_cross(a: float, b: float, pad: float) -> bool:
        return any(a < lt.x + CROSS_HALF + pad and b > lt.x - CROSS_HALF - pad for lt in lights)

    roofs = ((120, 122, 126), (80, 82, 88), (70, 90, 150), (150, 160, 170), (95, 110, 120), (60, 70, 110))
    buildings = []
    for side in (-1, 1):
        x = x0 - 40 + float(rng.uniform(0, 10))
        while x < x1 + 40:
            w = float(rng.uniform(8, 26))
            if not near_cross(x, x + w, 2.0):
                inner = 12.5 + float(rng.uniform(0, 2.5))
                outer = float(rng.uniform(20, WORLD_HALF + 2))
                ys = sorted((side * inner, side * outer))
                buildings.append((x, x + w, ys[0], ys[1], _jitter(rng, _pick(rng, roofs), 12)))
            x += w + float(rng.uniform(2, 9))
    trees = []
    for side in (-1, 1):
        x = x0 - 40 + float(rng.uniform(0, 8))
        while x < x1 + 40:
            r = float(rng.uniform(1.2, 2.3))
            if not near_cross(x - r, x + r, 1.0):
                trees.append((x, side * float(rng.uniform(11.0, 12.2)), r))
            x += float(rng.uniform(6, 15))
    cracks = []
    for _ in range(int((x1 - x0) / 12)):
        start = np.array([rng.uniform(x0, x1), rng.uniform(-ROAD_HALF, ROAD_HALF)])
        steps = rng.normal(0, 0.6, (int(rng.integers(3, 8)), 2)) + rng.normal(0, 0.5, 2)
        cracks.append(start + np.cumsum(np.vstack([[0, 0], steps]), axis=0))
    return _World(x0=x0, x1=x1, lights=tuple(lights), buildings=tuple(buildings), trees=tuple(trees),
                  cracks=tuple(cracks))


@dataclass
class _Live:
    vehicle: _Vehicle
    start: int
    s: float                    # progress along the lane's direction (= direction * x)
    v: float
    xs: list[float] = field(default_factory=list)


def _idm(v: float, v0: float, accel: float, gap: float | None, dv: float) -> float:
    """Intelligent Driver Model acceleration (gap to the obstacle ahead, dv = own - its speed)."""
    free = 1.0 - (v / v0) ** 4
    if gap is None:
        return accel * free
    s_star = IDM_S0 + max(0.0, v * IDM_T + v * dv / (2.0 * math.sqrt(accel * IDM_B)))
    return accel * (free - (s_star / max(gap, 0.1)) ** 2)


def _simulate(world: _World, rng: np.random.Generator, t0: float, t1: float) -> list[_Track]:
    """Vehicles arriving at both ends, car-following with IDM, stopping at red lights."""
    n_steps = int(math.ceil((t1 - t0) / DT)) + 2
    rates = [float(rng.uniform(*LANE_RATE)) for _ in LANES]
    next_arrival = [t0 + float(rng.exponential(1 / r)) for r in rates]
    pending: list[deque[_Vehicle]] = [deque() for _ in LANES]
    lanes: list[list[_Live]] = [[] for _ in LANES]          # leader first
    entry = {+1: world.x0, -1: -world.x1}                    # in progress coordinates
    exit_ = {+1: world.x1, -1: -world.x0}
    lines = {d: sorted(d * (lt.x - d * (CROSS_HALF + STOP_BACK)) for lt in world.lights) for d in (+1, -1)}
    light_at = {d: {d * (lt.x - d * (CROSS_HALF + STOP_BACK)): lt for lt in world.lights} for d in (+1, -1)}
    tracks: list[_Track] = []
    count = 0
    for step in range(n_steps):
        t = t0 + step * DT
        # arrivals queue at the road end until there is room to enter
        for li in range(len(LANES)):
            while next_arrival[li] <= t:
                pending[li].append(_make_vehicle(rng, count, li))
                count += 1
                next_arrival[li] += float(rng.exponential(1 / rates[li]))
            if pending[li]:
                d = LANES[li][0]
                veh = pending[li][0]
                last = lanes[li][-1] if lanes[li] else None
                front = entry[d] + veh.length / 2
                v = veh.v0 * 0.9
                if last is not None:
                    gap = last.s - last.vehicle.length / 2 - front
                    if gap < IDM_S0 + 1.0 + 0.8 * last.v:
                        continue
                    if gap < 40:
                        v = min(v, last.v + 1.0)
                pending[li].popleft()
                lanes[li].append(_Live(vehicle=veh, start=step, s=entry[d], v=v))
        # record, then move
        for li, lane in enumerate(lanes):
            d = LANES[li][0]
            for car in lane:
                car.xs.append(d * car.s)
            accs = []
            for j, car in enumerate(lane):
                veh = car.vehicle
                front = car.s + veh.length / 2
                if j == 0:
                    acc = _idm(car.v, veh.v0, veh.accel, None, 0.0)
                else:
                    lead = lane[j - 1]
                    gap = lead.s - lead.vehicle.length / 2 - front
                    acc = _idm(car.v, veh.v0, veh.accel, gap, car.v - lead.v)
                line = next((s for s in lines[d] if s >= front - 0.3), None)
                if line is not None:
                    state = light_at[d][line].state(t)
                    dist = line - front
                    stop = (state == "R" and dist >= car.v ** 2 / (2 * HARD_BRAKE)) or \
                           (state == "Y" and dist >= car.v ** 2 / (2 * IDM_B))
                    if stop:
                        acc = min(acc, _idm(car.v, veh.v0, veh.accel, dist + 1.0, car.v))
                accs.append(max(-8.0, min(acc, veh.accel)))
            for j, (car, acc) in enumerate(zip(lane, accs)):
                car.v = max(0.0, car.v + acc * DT)
                car.s += car.v * DT
                if j > 0:  # never drive into the leader (already moved)
                    lead = lane[j - 1]
                    limit = lead.s - lead.vehicle.length / 2 - car.vehicle.length / 2 - 0.5
                    if car.s > limit:
                        car.s, car.v = limit, min(car.v, lead.v)
            keep = []
            for car in lane:
                if car.s - car.vehicle.length / 2 > exit_[d]:
                    tracks.append(_Track(car.vehicle, car.start, np.asarray(car.xs)))
                else:
                    keep.append(car)
            lanes[li] = keep
    for lane in lanes:
        for car in lane:
            if car.xs:
                tracks.append(_Track(car.vehicle, car.start, np.asarray(car.xs)))
    tracks.sort(key=lambda tr: tr.vehicle.index)
    return tracks


# --- cameras and the background ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CameraView:
    """One camera: its name, timing, homography (world metres -> image pixels) and renders."""

    index: int
    name: str
    fps: float
    frames: int
    offset_s: float
    homography: np.ndarray      # 3x3, world ground plane (x, y, 1) -> image (u, v, 1)
    far_sign: int               # +1: the camera stands south of the road (far = +y)
    x_range: tuple[float, float]
    unlit: np.ndarray           # background before lighting (H, W, 3) uint8
    light: np.ndarray           # per-pixel lighting gain (H, W, 3) float32
    noise: tuple[np.ndarray, ...]
    roi: np.ndarray             # (H, W) uint8, 255 on the road

    def frame_time(self, frame: int) -> float:
        return self.offset_s + (frame - 1) / self.fps


def _project(h: np.ndarray, x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w, (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w


def _camera_geometry(rng: np.random.Generator, centre: float, view: float, width: int, height: int):
    """World quadrilateral seen by the image corners, and the homography between them."""
    far_sign = 1 if rng.random() < 0.65 else -1
    far = view * FAR_WIDEN
    jx = lambda: float(np.clip(rng.normal(0, 0.04 * view), -0.08 * view, 0.08 * view))  # noqa: E731
    jy = lambda: float(rng.uniform(-0.6, 0.6))  # noqa: E731
    # image corners: bottom-left, bottom-right, top-right, top-left
    s = far_sign  # from the north side, image left is east (larger x)
    world = np.array([
        [centre - s * view / 2 + jx(), -s * NEAR_Y + jy()],
        [centre + s * view / 2 + jx(), -s * NEAR_Y + jy()],
        [centre + s * far / 2 + jx(), s * FAR_Y + jy()],
        [centre - s * far / 2 + jx(), s * FAR_Y + jy()],
    ], np.float32)
    image = np.array([[0, height], [width, height], [width, 0], [0, 0]], np.float32)
    h = cv2.getPerspectiveTransform(world, image).astype(np.float64)
    h /= h[2, 2]
    return h, far_sign, (float(world[:, 0].min()), float(world[:, 0].max()))


def _lowfreq(rng: np.random.Generator, h: int, w: int, cell: float, channels: int = 1) -> np.ndarray:
    """Smooth noise of unit-ish amplitude with features about `cell` pixels across."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.normal(0.0, 1.0, (gh, gw, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _paint_world(world: _World, rng: np.random.Generator, xa: float, xb: float, res: float):
    """A top-down raster of the world between x = xa and xb: (image, road mask, metres->raster)."""
    w, h = int(math.ceil((xb - xa) * res)), int(math.ceil(2 * WORLD_HALF * res))
    to_px = np.array([[res, 0, -xa * res], [0, -res, WORLD_HALF * res], [0, 0, 1]], np.float64)

    def pt(x, y):
        return (int(round((x - xa) * res)), int(round((WORLD_HALF - y) * res)))

    def rect(img, x0, x1, y0, y1, colour):
        a, b = pt(x0, y1), pt(x1, y0)
        cv2.rectangle(img, a, (b[0] - 1, b[1] - 1), colour, -1)

    def line(img, x0, y0, x1, y1, colour, width_m):
        cv2.line(img, pt(x0, y0), pt(x1, y1), colour, max(1, int(round(width_m * res))))

    # ground: grass and dirt, blotchy
    mix = np.clip(_lowfreq(rng, h, w, 5 * res) * 0.5 + 0.5, 0, 1)
    grass, dirt = np.array([62, 118, 92], np.float32), np.array([88, 112, 122], np.float32)
    img = grass * (1 - mix) + dirt * mix + rng.normal(0, 7, (h, w, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for x0, x1, y0, y1, colour in world.buildings:
        if x1 < xa or x0 > xb:
            continue
        rect(img, x0, x1, y0, y1, colour)
        edge = tuple(int(c * 0.7) for c in colour)
        cv2.rectangle(img, pt(x0, y1), pt(x1, y0), edge, max(1, int(round(0.4 * res))))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rect(img, cx - 1.5, cx + 1.0, cy - 1.0, cy + 1.2, tuple(min(255, int(c * 1.25)) for c in colour))
    for x, y, r in world.trees:
        if xa - r <= x <= xb + r:
            cv2.circle(img, pt(x, y), max(1, int(r * res)), (38, 82, 44), -1)
            cv2.circle(img, pt(x - r * 0.25, y + r * 0.25), max(1, int(r * 0.55 * res)), (52, 110, 62), -1)
    # sidewalks, with slab joints
    walk = np.zeros((h, w), np.uint8)
    for side in (-1, 1):
        rect(walk, xa - 1, xb + 1, min(side * ROAD_HALF, side * SIDEWALK_OUTER),
             max(side * ROAD_HALF, side * SIDEWALK_OUTER), 255)
    concrete = np.float32([166, 170, 168]) + rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    img[walk > 0] = np.clip(concrete, 0, 255).astype(np.uint8)[walk > 0]
    joints = np.zeros((h, w), np.uint8)
    for x in np.arange(math.floor(xa / 2) * 2, xb + 2, 2.0):
        for side in (-1, 1):
            line(joints, x, side * ROAD_HALF, x, side * SIDEWALK_OUTER, 255, 0.06)
    img[(joints > 0) & (walk > 0)] = (128, 130, 128)
    # asphalt: arterial and cross streets
    road = np.zeros((h, w), np.uint8)
    rect(road, xa - 1, xb + 1, -ROAD_HALF, ROAD_HALF, 255)
    for lt in world.lights:
        rect(road, lt.x - CROSS_HALF, lt.x + CROSS_HALF, -WORLD_HALF - 1, WORLD_HALF + 1, 255)
    asphalt = (np.float32([90, 91, 94]) + 7 * _lowfreq(rng, h, w, 3 * res)
               + rng.normal(0, 6, (h, w, 1)).astype(np.float32))
    img[road > 0] = np.clip(asphalt, 0, 255).astype(np.uint8)[road > 0]
    for crack in world.cracks:
        if xa - 5 <= crack[0, 0] <= xb + 5:
            pts = np.array([pt(x, y) for x, y in crack], np.int32)
            cv2.polylines(img, [pts], False, (62, 63, 66), 1)
    # markings (drawn, then worn by grain below)
    white, yellow = (214, 218, 220), (50, 176, 214)
    zones = [(lt.x - CROSS_HALF - STOP_BACK, lt.x + CROSS_HALF + STOP_BACK) for lt in world.lights]

    def spans(a: float, b: float):
        """[a, b] minus the intersections."""
        out = [(a, b)]
        for z0, z1 in zones:
            out = [p for s, e in out for p in ((s, min(e, z0)), (max(s, z1), e)) if p[1] - p[0] > 0.05]
        return out

    for s, e in spans(xa - 1, xb + 1):
        for y in (-ROAD_HALF + 0.3, ROAD_HALF - 0.3):
            line(img, s, y, e, y, white, 0.15)
        for y in (-0.15, 0.15):
            line(img, s, y, e, y, yellow, 0.12)
        for y in (-3.5, 3.5):
            for x in np.arange(math.floor(s / 9) * 9, e, 9.0):
                a, b = max(x, s), min(x + 3, e)
                if b > a:
                    line(img, a, y, b, y, white, 0.15)
    for lt in world.lights:
        line(img, lt.x - CROSS_HALF - STOP_BACK, -ROAD_HALF, lt.x - CROSS_HALF - STOP_BACK, 0, white, 0.45)
        line(img, lt.x + CROSS_HALF + STOP_BACK, 0, lt.x + CROSS_HALF + STOP_BACK, ROAD_HALF, white, 0.45)
        for sgn in (-1, 1):
            xs = sorted((lt.x + sgn * (CROSS_HALF + 0.3), lt.x + sgn * (CROSS_HALF + 2.7)))
            for y in np.arange(-ROAD_HALF + 0.5, ROAD_HALF, 1.1):
                rect(img, xs[0], xs[1], y, y + 0.55, white)
        for sgn in (-1, 1):
            for y in np.arange(ROAD_HALF + 1, WORLD_HALF, 6.0):
                line(img, lt.x, sgn * y, lt.x, sgn * (y + 3), yellow, 0.12)
    grain = rng.normal(0, 5, (h, w, 1)).astype(np.float32) + 4 * _lowfreq(rng, h, w, 8 * res)
    img = np.clip(img.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    return img, road, to_px


def _lighting(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    gain = float(rng.uniform(0.82, 1.12))
    tint = rng.uniform(0.94, 1.06, 3).astype(np.float32)
    amp, angle, vignette = float(rng.uniform(0, 0.15)), float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 0.2))
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    un, vn = u / width - 0.5, v / height - 0.5
    ramp = 1 + amp * 2 * (un * math.cos(angle) + vn * math.sin(angle))
    vig = 1 - vignette * (un ** 2 + vn ** 2) * 2
    return (gain * ramp * vig)[:, :, None] * tint[None, None, :]


# --- drawing vehicles ----------------------------------------------------------------------------


def _rounded(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, r: int, colour) -> None:
    """A filled rounded rectangle with inclusive corners (x0, y0)-(x1, y1)."""
    r = max(0, min(r, (x1 - x0) // 2, (y1 - y0) // 2))
    cv2.rectangle(img, (x0 + r, y0), (x1 - r, y1), colour, -1)
    cv2.rectangle(img, (x0, y0 + r), (x1, y1 - r), colour, -1)
    if r > 0:
        for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
            cv2.circle(img, (cx, cy), r, colour, -1)


def _sprite(veh: _Vehicle, w: int, h: int, e: int, facing_right: bool) -> tuple[np.ndarray, np.ndarray]:
    """The vehicle in a w x h box: roof in the upper h - e rows, its near side in the lower e rows."""
    e = min(max(1, e), h - 1) if h > 1 else 0
    top = h - e
    body = np.float32(veh.colour)
    img = np.empty((h, w, 3), np.float32)
    img[:] = body
    img[top:] = body * 0.78                     # the near side, in shade

    def X(f: float) -> int:  # noqa: N802
        return int(round(f * w))

    def paint(x0f, x1f, y0, y1, colour):
        a, b = X(x0f), max(X(x0f) + 1, X(x1f))
        img[max(0, y0):max(y0 + 1, y1), a:b] = colour

    r0, r1 = int(round(top * 0.18)), max(int(round(top * 0.18)) + 1, int(round(top * 0.84)))
    side_win = top + max(1, int(round(e * 0.5)))
    if veh.kind == "car":
        paint(0.30, 0.80, r0, r1, body * 0.72)
        paint(0.66, 0.78, r0, r1, GLASS)
        paint(0.30, 0.36, r0, r1, GLASS)
        paint(0.33, 0.76, top, side_win, SIDE_GLASS)
        wheels = (0.2, 0.8)
    elif veh.kind == "van":
        paint(0.12, 0.94, r0, r1, body * 0.88)
        paint(0.84, 0.94, r0, r1, GLASS)
        paint(0.70, 0.92, top, side_win, SIDE_GLASS)
        wheels = (0.18, 0.82)
    elif veh.kind == "truck":
        cargo = np.float32(veh.cargo)
        img[:top, : X(0.75)] = cargo
        img[top:, : X(0.75)] = cargo * 0.8
        paint(0.745, 0.765, 0, h, (35, 35, 38))
        paint(0.88, 0.97, r0, r1, GLASS)
        paint(0.80, 0.95, top, side_win, SIDE_GLASS)
        wheels = (0.12, 0.24, 0.85)
    else:  # bus
        img[:top] = np.minimum(body * 1.06, 255)
        paint(0.40, 0.55, r0, r1, body * 0.8)
        paint(0.05, 0.92, top, top + max(1, int(round(e * 0.55))), SIDE_GLASS)
        paint(0.93, 0.99, r0, r1, GLASS)
        wheels = (0.18, 0.82)
    if veh.accent is not None and e >= 3:
        y = top + int(round(e * 0.62))
        paint(0.02, 0.98, y, y + max(1, int(round(e * 0.14))), veh.accent)
    lamp_rows = (top, top + max(1, e // 3))
    paint(0.965, 1.0, *lamp_rows, HEADLIGHT)
    paint(0.0, 0.035, *lamp_rows, TAILLIGHT)
    img += cv2.resize(veh.texture, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, 3)
    out = np.clip(img, 0, 255).astype(np.uint8)
    for f in wheels:
        cv2.ellipse(out, (X(f), h - 1), (max(1, int(round(w * 0.06))), max(1, int(round(e * 0.45)))),
                    0, 0, 360, TYRE, -1)
    mask = np.zeros((h, w), np.uint8)
    _rounded(mask, 0, 0, w - 1, h - 1, int(min(w, h) * 0.25), 255)
    if not facing_right:
        out, mask = out[:, ::-1], mask[:, ::-1]
    return out, mask > 0


@dataclass(frozen=True)
class _Placed:
    track: int                  # index into Scene.tracks
    box: tuple[int, int, int, int]   # x0, y0, x1, y1 (exclusive), unclipped
    side: int                   # image rows of the vehicle's sides (the lower part of the box)
    facing_right: bool
    gt: bool


# --- the scene -------------------------------------------------------------------------------------


class Scene:
    """A built scene: world, cameras, vehicle tracks and every camera's boxes; renders any frame."""

    def __init__(self, config: SceneConfig, world: _World, cameras: list[CameraView], tracks: list[_Track],
                 t0: float):
        self.config = config
        self.world = world
        self.cameras = tuple(cameras)
        self.tracks = tuple(tracks)
        self._t0 = t0
        self._starts = np.array([tr.start for tr in tracks], float)
        self._ends = np.array([tr.end for tr in tracks], float)
        self._placed = [[self._place(cam, k) for k in range(1, cam.frames + 1)] for cam in self.cameras]
        seen = sorted({p.track for per_cam in self._placed for per_frame in per_cam for p in per_frame if p.gt})
        self.ids = {track: i + 1 for i, track in enumerate(seen)}   # global ids across cameras

    def _place(self, cam: CameraView, frame: int) -> list[_Placed]:
        """Every vehicle the camera sees in this frame, far to near, with its gt decision."""
        cfg = self.config
        f = (cam.frame_time(frame) - self._t0) / DT
        alive = np.nonzero((self._starts <= f) & (f <= self._ends))[0]
        rows = []
        for ti in alive:
            tr = self.tracks[ti]
            veh = tr.vehicle
            i = f - tr.start
            j = min(int(i), len(tr.xs) - 2) if len(tr.xs) > 1 else 0
            frac = i - j
            x = float(tr.xs[j] * (1 - frac) + tr.xs[min(j + 1, len(tr.xs) - 1)] * frac)
            if x + veh.length / 2 < cam.x_range[0] - 5 or x - veh.length / 2 > cam.x_range[1] + 5:
                continue
            rows.append((ti, x, LANES[veh.lane][1] + veh.lateral, veh))
        if not rows:
            return []
        ti = np.array([r[0] for r in rows])
        x, y = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        length = np.array([r[3].length for r in rows])
        width = np.array([r[3].width for r in rows])
        height = np.array([r[3].height for r in rows])
        direction = np.array([LANES[r[3].lane][0] for r in rows])
        cx = x[:, None] + np.array([-0.5, 0.5, 0.5, -0.5]) * length[:, None]
        cy = y[:, None] + np.array([-0.5, -0.5, 0.5, 0.5]) * width[:, None]
        u, v = _project(cam.homography, cx, cy)
        near_y = y - cam.far_sign * width / 2
        _, v_a = _project(cam.homography, x, near_y)
        _, v_b = _project(cam.homography, x, near_y + cam.far_sign)
        side = height * TILT * np.abs(v_a - v_b)
        u_a, _ = _project(cam.homography, x, y)
        u_b, _ = _project(cam.homography, x + direction, y)
        x0 = np.floor(u.min(axis=1) + 0.5).astype(int)
        x1 = np.floor(u.max(axis=1) + 0.5).astype(int)
        y1 = np.floor(v.max(axis=1) + 0.5).astype(int)
        y0 = np.floor(v.min(axis=1) - side + 0.5).astype(int)
        order = sorted(range(len(rows)), key=lambda n: (y1[n], int(ti[n])))
        W, H = cfg.width, cfg.height
        label = np.full((H, W), -1, np.int32)
        drawn = []
        for n in order:
            if x1[n] - x0[n] < 2 or y1[n] - y0[n] < 2:
                continue
            a, b, c, d = max(0, x0[n]), max(0, y0[n]), min(W, x1[n]), min(H, y1[n])
            if c <= a or d <= b:
                continue
            label[b:d, a:c] = n
            drawn.append(n)
        out = []
        for n in drawn:
            a, b, c, d = max(0, x0[n]), max(0, y0[n]), min(W, x1[n]), min(H, y1[n])
            visible = int(np.count_nonzero(label[b:d, a:c] == n))
            full = (x1[n] - x0[n]) * (y1[n] - y0[n])
            gt = visible >= VISIBLE_MIN * full and min(c - a, d - b) >= cfg.min_box_side
            out.append(_Placed(track=int(ti[n]), box=(int(x0[n]), int(y0[n]), int(x1[n]), int(y1[n])),
                               side=int(round(side[n])), facing_right=bool(u_b[n] > u_a[n]), gt=gt))
        return out

    # --- renders -------------------------------------------------------------------------------

    def background(self, cam: int) -> np.ndarray:
        """The camera's empty scene, lit, without sensor noise (BGR uint8)."""
        c = self.cameras[cam]
        return np.clip(c.unlit.astype(np.float32) * c.light, 0, 255).astype(np.uint8)

    def render(self, cam: int, frame: int) -> np.ndarray:
        """Frame `frame` (1-based) of camera `cam` (0-based index), BGR uint8."""
        c = self.cameras[cam]
        canvas = c.unlit.copy()
        H, W = canvas.shape[:2]
        for p in self._placed[cam][frame - 1]:
            x0, y0, x1, y1 = p.box
            sprite, mask = _sprite(self.tracks[p.track].vehicle, x1 - x0, y1 - y0, p.side, p.facing_right)
            a, b, cc, d = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
            sub_m = mask[b - y0:d - y0, a - x0:cc - x0]
            canvas[b:d, a:cc][sub_m] = sprite[b - y0:d - y0, a - x0:cc - x0][sub_m]
        rng = np.random.default_rng([self.config.seed, 0xF4A3E, cam, frame])
        flicker = float(rng.normal(1.0, 0.012))
        noise = c.noise[int(rng.integers(len(c.noise)))]
        if rng.random() < 0.5:
            noise = noise[::-1]
        if rng.random() < 0.5:
            noise = noise[:, ::-1]
        out = canvas.astype(np.float32) * (c.light * flicker) + noise
        return np.clip(out, 0, 255).astype(np.uint8)

    # --- ground truth --------------------------------------------------------------------------

    def gt_rows(self, cam: int) -> list[tuple[int, int, int, int, int, int]]:
        """(frame, id, left, top, width, height) for the camera, by frame then id."""
        W, H = self.config.width, self.config.height
        rows = []
        for k, placed in enumerate(self._placed[cam], start=1):
            for p in placed:
                if p.gt:
                    x0, y0, x1, y1 = p.box
                    a, b, c, d = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
                    rows.append((k, self.ids[p.track], a, b, c - a, d - b))
        rows.sort()
        return rows

    def gt_text(self, cam: int) -> str:
        return "".join(f"{f},{i},{x},{y},{w},{h},1,-1,-1,-1\n" for f, i, x, y, w, h in self.gt_rows(cam))

    def stopped_at_lights(self) -> int:
        """How many vehicles came to a stop at some point (queues at red lights)."""
        return sum(1 for tr in self.tracks if len(tr.xs) > 20 and np.any(np.abs(np.diff(tr.xs)) < 0.2 * DT))


def build_scene(config: SceneConfig) -> Scene:
    """Lay out the world and cameras, simulate the traffic and place every vehicle in every frame."""
    config.check()
    world_ss, cam_ss, traffic_ss, paint_ss = np.random.SeedSequence(config.seed).spawn(4)
    rng = np.random.default_rng(cam_ss)
    views = [VIEW_NEAR_M * float(rng.uniform(0.9, 1.1)) for _ in range(config.cameras)]
    centres = [0.0]
    for a, b in zip(views, views[1:]):
        centres.append(centres[-1] + (1 - OVERLAP) * (a + b) / 2)
    geometry = [_camera_geometry(rng, c, v, config.width, config.height) for c, v in zip(centres, views)]
    offsets = np.round(rng.uniform(0, MAX_OFFSET_S, config.cameras), 3)
    offsets = np.round(offsets - offsets.min(), 3)
    x_lo = min(g[2][0] for g in geometry) - ROAD_MARGIN
    x_hi = max(g[2][1] for g in geometry) + ROAD_MARGIN
    world = _make_world(np.random.default_rng(world_ss), x_lo, x_hi)

    res = min(24.0, math.ceil(1.25 * config.width / min(views)))
    cameras = []
    for i, ((hom, far_sign, xr), seed_ss) in enumerate(zip(geometry, paint_ss.spawn(config.cameras))):
        crng = np.random.default_rng(seed_ss)
        raster, road, to_px = _paint_world(world, crng, xr[0] - 3, xr[1] + 3, res)
        warp = hom @ np.linalg.inv(to_px)
        size = (config.width, config.height)
        unlit = cv2.warpPerspective(raster, warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        roi = cv2.warpPerspective(road, warp, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        light = _lighting(crng, config.width, config.height)
        sigma = float(crng.uniform(2.5, 4.5))
        noise = tuple(crng.normal(0, sigma, (config.height, config.width, 3)).astype(np.float32) for _ in range(3))
        cameras.append(CameraView(
            index=i, name=config.camera_names()[i], fps=config.camera_fps(i), frames=config.frame_counts()[i],
            offset_s=float(offsets[i]), homography=hom, far_sign=far_sign, x_range=xr, unlit=unlit,
            light=light, noise=noise, roi=roi,
        ))
    t_end = max(c.frame_time(c.frames) for c in cameras) + DT
    warm = (x_hi - x_lo) / 6.0 + 20.0
    tracks = _simulate(world, np.random.default_rng(traffic_ss), -warm, t_end)
    return Scene(config, world, cameras, tracks, -warm)


# --- writing -------------------------------------------------------------------------------------


def calibration_line(h: np.ndarray) -> str:
    """`Homography matrix: a b c;d e f;g h i` (world ground-plane metres -> image pixels)."""
    return "Homography matrix: " + ";".join(" ".join(f"{v:.10g}" for v in row) for row in h) + "\n"


def _format_offset(offset: float) -> str:
    return "0" if offset == 0 else f"{offset:.3f}"


def _open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter_fourcc(*FOURCC)
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, size)
    if not writer.isOpened():
        writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise JellyBeanError(f"{path}: OpenCV cannot write {FOURCC} video here; check that opencv-python-headless "
                             f"is installed and the directory is writable")
    return writer


def _prepare(root: Path, scenario_dir: Path, overwrite: bool) -> None:
    for p in (root, root / scenario_dir.parent.name, scenario_dir):
        if p.exists() and not p.is_dir():
            raise JellyBeanError(f"{p}: exists and is not a directory; choose another DIR")
    if scenario_dir.exists() and any(scenario_dir.iterdir()):
        if not overwrite:
            raise JellyBeanError(f"{scenario_dir}: already exists and is not empty; pass --overwrite to replace it "
                                 f"or choose another --scenario or DIR")
        shutil.rmtree(scenario_dir)
    scenario_dir.mkdir(parents=True, exist_ok=True)


def write_scene(root: Path | str, config: SceneConfig,
                on_frame: Callable[[int, int, str], None] | None = None) -> SceneSummary:
    """Write one scenario under `root` in the CityFlow layout; `on_frame(done, total, camera)` after
    every frame written. Returns what was written."""
    config.check()
    root = Path(root)
    scenario_dir = root / config.split / config.scenario
    _prepare(root, scenario_dir, config.overwrite)
    scene = build_scene(config)
    total = sum(c.frames for c in scene.cameras)
    done = 0
    summaries = []
    size = (config.width, config.height)
    for cam in scene.cameras:
        cam_dir = scenario_dir / cam.name
        (cam_dir / "gt").mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(cam_dir / "roi.jpg"), cam.roi):
            raise JellyBeanError(f"{cam_dir / 'roi.jpg'}: could not be written")
        (cam_dir / "calibration.txt").write_text(calibration_line(cam.homography))
        writer = _open_writer(cam_dir / "vdo.avi", cam.fps, size)
        try:
            for k in range(1, cam.frames + 1):
                writer.write(scene.render(cam.index, k))
                done += 1
                if on_frame is not None:
                    on_frame(done, total, cam.name)
        finally:
            writer.release()
        rows = scene.gt_rows(cam.index)
        (cam_dir / "gt" / "gt.txt").write_text(scene.gt_text(cam.index))
        summaries.append(CameraSummary(name=cam.name, fps=cam.fps, frames=cam.frames, offset_s=cam.offset_s,
                                       vehicles=len({r[1] for r in rows}), gt_boxes=len(rows)))
    for folder, value in (("cam_timestamp", lambda c: _format_offset(c.offset_s)),
                          ("cam_framenum", lambda c: str(c.frames))):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{config.scenario}.txt").write_text("".join(f"{c.name} {value(c)}\n" for c in scene.cameras))
    return SceneSummary(directory=scenario_dir, scenario=config.scenario, split=config.split,
                        cameras=tuple(summaries), vehicles=len(scene.ids),
                        gt_boxes=sum(s.gt_boxes for s in summaries))
