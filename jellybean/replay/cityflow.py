"""A reader of the AI City Challenge (CityFlow) multi-camera tracking layout.

    DIR/<split>/<S0X>/<cNNN>/vdo.avi, roi.jpg, calibration.txt, gt/gt.txt
    DIR/cam_timestamp/<S0X>.txt   `cNNN <start offset seconds>`
    DIR/cam_framenum/<S0X>.txt    `cNNN <number of frames>`

Splits are `train`, `validation` and `test` (the test split ships without gt). A camera's frame k
(1-based) was taken at `offset_s + (k - 1) / fps` on the scenario's clock; fps comes from the video
container (10, or 8 for c015 in the real data).

Problems do not stop the reading: `open_dataset` records each one (a missing or undecodable video,
a missing timestamp or frame-count entry, a malformed gt line, named by file and line) as a
`Problem` on its camera (`Camera.problems`, `Camera.problem`) and on the dataset
(`Dataset.problems`), so that replay can go on with the cameras that are fine and report partial
results. Using the broken part (`Camera.frames()` without a video, `Camera.gt()` with a bad line)
raises a `SpecError` with the same message; `open_dataset(..., strict=True)` or
`Dataset.raise_for_problems()` raise them all at once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from jellybean.errors import SpecError
from jellybean.spec.base import not_utf8

SPLITS = ("train", "validation", "test")
GT_FIELDS = "frame,id,left,top,width,height,1,-1,-1,-1"
MAX_LINE_PROBLEMS = 5           # per file; the rest are counted

# what each kind of problem stops: replaying the camera, or evaluating it
BLOCKS_REPLAY = frozenset({"video", "timestamp"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the dataset; `message` names the file (and line) and what to do."""

    where: str                  # "train/S01/c003", or "train/S01" for a scenario-wide problem
    kind: str                   # video | timestamp | framenum | gt | calibration | layout
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class GtRow:
    """One ground-truth box: 1-based frame, global vehicle id, box in pixels."""

    frame: int
    id: int
    left: float
    top: float
    width: float
    height: float


def parse_int(text: str) -> int:
    """An integer written as "12" or "12.0"; ValueError otherwise (NaN and infinity included)."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def parse_count(text: str) -> int:
    """A number of frames: a whole number >= 0; ValueError otherwise."""
    value = parse_int(text)
    if value < 0:
        raise ValueError(text)
    return value


def parse_finite(text: str) -> float:
    """A finite number; ValueError for anything else, NaN and infinity included."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(the file's UTF-8 text, None), or (None, "what is wrong, what to do") when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"{not_utf8(exc)}; save it as UTF-8 text"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"


class LineProblems:
    """Problems of a line-oriented file, `file: line N: what`, the first MAX_LINE_PROBLEMS in full."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listed: list[str] = []
        self.extra = 0

    def add(self, line: int, problem: str | None) -> None:
        if problem is None:
            return
        if len(self.listed) < MAX_LINE_PROBLEMS:
            self.listed.append(f"{self.path}: line {line}: {problem}")
        else:
            self.extra += 1

    @property
    def problems(self) -> list[str]:
        return self.listed + ([f"{self.path}: {self.extra} more bad lines"] if self.extra else [])


def parse_gt(path: Path, frame_count: int | None = None) -> tuple[list[GtRow], list[str]]:
    """Rows of a MOT-format gt file and the problems found (`file: line N: what is wrong`)."""
    rows: list[GtRow] = []
    found = LineProblems(path)
    text, problem = read_text(path)
    if text is None:
        return [], [f"{path}: {problem}"]
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        problem = None
        if len(parts) != 10:
            problem = f"expected 10 comma-separated fields ({GT_FIELDS}), got {len(parts)}: '{line}'"
        else:
            try:
                frame, ident = parse_int(parts[0]), parse_int(parts[1])
                left, top, width, height = (parse_finite(p) for p in parts[2:6])
                float(parts[6]), float(parts[7]), float(parts[8]), float(parts[9])
            except ValueError:
                problem = f"expected numbers ({GT_FIELDS}), finite, with integer frame and id, got '{line[:120]}'"
            else:
                if frame < 1:
                    problem = f"frame {frame}: frames are numbered from 1"
                elif frame_count is not None and frame > frame_count:
                    problem = f"frame {frame}: beyond the camera's {frame_count} frames (cam_framenum)"
                elif ident < 0:
                    problem = f"id {ident}: ids are 0 or more"
                elif not (width > 0 and height > 0):
                    problem = f"box {width}x{height}: width and height must be greater than 0"
                else:
                    rows.append(GtRow(frame, ident, left, top, width, height))
        found.add(n, problem)
    return rows, found.problems


def parse_homography(path: Path) -> np.ndarray:
    """The 3x3 `Homography matrix: a b c;d e f;g h i` of a calibration.txt (world -> image)."""
    text, problem = read_text(path)
    if text is None:
        raise SpecError([f"{path}: {problem}"])
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip().lower().startswith("homography matrix:"):
            body = line.split(":", 1)[1]
            try:
                rows = [[parse_finite(v) for v in r.split()] for r in body.split(";") if r.strip()]
                h = np.array(rows, float)
            except ValueError:
                h = None
            if h is None or h.shape != (3, 3):
                raise SpecError([f"{path}: line {n}: expected 'Homography matrix: a b c;d e f;g h i' with 9 finite "
                                 "numbers"])
            return h
    raise SpecError([f"{path}: no 'Homography matrix:' line"])


def _read_table(path: Path, value, what: str, kind: str, where: str
                ) -> tuple[dict[str, object], list[Problem], str | None]:
    """`cNNN <value>` lines of cam_timestamp / cam_framenum, the problems, and why the file could
    not be read at all (None when it could, or does not exist)."""
    table: dict[str, object] = {}
    problems: list[Problem] = []
    if not path.is_file():
        return table, problems, None
    text, unreadable = read_text(path)
    if text is None:
        problems.append(Problem(where, kind, f"{path}: {unreadable}"))
        return table, problems, unreadable
    found = LineProblems(path)
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            table[parts[0]] = value(parts[1])
        except ValueError:
            found.add(n, f"expected 'cNNN <{what}>', got '{line[:120]}'")
    problems.extend(Problem(where, kind, m) for m in found.problems)
    return table, problems, None


@dataclass(frozen=True, eq=False)
class Camera:
    """One camera of one scenario. `fps`, `frame_count` and `offset_s` are None when unknown (the
    reason is in `problems`)."""

    split: str
    scenario: str
    name: str
    directory: Path
    fps: float | None
    frame_count: int | None
    offset_s: float | None
    problems: tuple[Problem, ...] = ()
    _gt: tuple[GtRow, ...] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return f"{self.split}/{self.scenario}/{self.name}"

    @property
    def video_path(self) -> Path:
        return self.directory / "vdo.avi"

    @property
    def roi_path(self) -> Path:
        return self.directory / "roi.jpg"

    @property
    def calibration_path(self) -> Path:
        return self.directory / "calibration.txt"

    @property
    def gt_path(self) -> Path:
        return self.directory / "gt" / "gt.txt"

    @property
    def problem(self) -> str | None:
        """All of this camera's problems, one per line, or None."""
        return "\n".join(p.message for p in self.problems) or None

    @property
    def playable(self) -> bool:
        """The video decodes and the start offset is known: replay can use this camera."""
        return not any(p.kind in BLOCKS_REPLAY for p in self.problems)

    @property
    def has_gt(self) -> bool:
        return self.gt_path.is_file()

    def timestamp(self, frame: int) -> float:
        """Seconds on the scenario's clock at which 1-based `frame` was taken."""
        self._require("timestamp", "video")
        return self.offset_s + (frame - 1) / self.fps

    def gt(self) -> list[GtRow]:
        """The ground-truth rows; SpecError naming the file and line when a line is malformed."""
        self._require("gt")
        if self._gt is not None:
            return list(self._gt)
        if not self.has_gt:
            raise SpecError([f"{self.gt_path}: no ground truth for {self.key} (test splits ship without it)"])
        rows, problems = parse_gt(self.gt_path, self.frame_count)
        if problems:
            raise SpecError(problems)
        return rows

    def frames(self, start: int = 1, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number, BGR image) from 1-based `start` through `stop` (inclusive), decoded by OpenCV."""
        import cv2

        self._require("video")
        cap = cv2.VideoCapture(str(self.video_path))
        if not cap.isOpened():
            raise SpecError([f"{self.video_path}: cannot be decoded by OpenCV"])
        try:
            if start > 1:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start - 1)
            k = start
            while stop is None or k <= stop:
                ok, image = cap.read()
                if not ok:
                    break
                yield k, image
                k += 1
        finally:
            cap.release()

    def homography(self) -> np.ndarray:
        """World ground plane -> image pixels, from calibration.txt."""
        return parse_homography(self.calibration_path)

    def roi(self) -> np.ndarray:
        """Boolean mask, True on the road (roi.jpg is white there)."""
        import cv2

        image = cv2.imread(str(self.roi_path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise SpecError([f"{self.roi_path}: missing or not an image"])
        return image > 127

    def _require(self, *kinds: str) -> None:
        bad = [p.message for p in self.problems if p.kind in kinds]
        if bad:
            raise SpecError(bad)


@dataclass(frozen=True)
class Scenario:
    split: str
    name: str
    cameras: tuple[Camera, ...]
    problems: tuple[Problem, ...] = ()    # scenario-wide (a malformed cam_timestamp line, ...)

    def camera(self, name: str) -> Camera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise SpecError([f"{self.split}/{self.name}: no camera '{name}'; "
                         f"cameras: {', '.join(c.name for c in self.cameras) or 'none'}"])


@dataclass(frozen=True)
class Dataset:
    root: Path
    scenarios: tuple[Scenario, ...]

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if any(sc.split == s for sc in self.scenarios)]

    def scenario(self, name: str, split: str | None = None) -> Scenario:
        found = [s for s in self.scenarios if s.name == name and split in (None, s.split)]
        if not found:
            names = sorted({f"{s.split}/{s.name}" for s in self.scenarios})
            raise SpecError([f"{self.root}: no scenario '{name}'" + (f" in {split}" if split else "")
                             + f"; scenarios: {', '.join(names) or 'none'}"])
        return found[0]

    def cameras(self, *, playable_only: bool = False) -> list[Camera]:
        return [c for s in self.scenarios for c in s.cameras if c.playable or not playable_only]

    @property
    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        for s in self.scenarios:
            out.extend(s.problems)
            for c in s.cameras:
                out.extend(c.problems)
        return out

    def raise_for_problems(self) -> None:
        if self.problems:
            raise SpecError([p.message for p in self.problems])


def _video_info(path: Path) -> tuple[float | None, int | None]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None, None
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        return fps, count
    finally:
        cap.release()


def _why_missing(path: Path, name: str, unreadable: str | None) -> str:
    if unreadable is not None:
        return unreadable
    return "no entry for " + name if path.is_file() else "missing"


def _open_camera(split: str, scenario: str, directory: Path, offsets: dict, counts: dict,
                 offsets_path: Path, counts_path: Path, load_gt: bool,
                 unreadable: tuple[str | None, str | None] = (None, None)) -> Camera:
    name = directory.name
    where = f"{split}/{scenario}/{name}"
    problems: list[Problem] = []
    fps = video_count = None
    video = directory / "vdo.avi"
    if not video.is_file():
        problems.append(Problem(where, "video", f"{video}: missing video for {where}"))
    else:
        fps, video_count = _video_info(video)
        if fps is None:
            problems.append(Problem(where, "video", f"{video}: cannot be decoded by OpenCV (or reports no fps)"))
    offset = offsets.get(name)
    if offset is None:
        why = _why_missing(offsets_path, name, unreadable[0])
        problems.append(Problem(where, "timestamp",
                                f"{offsets_path}: {why}; expected a line '{name} <start offset seconds>'"))
    frame_count = counts.get(name)
    if frame_count is None:
        why = _why_missing(counts_path, name, unreadable[1])
        hint = f" (using the video's {video_count} frames)" if video_count else ""
        problems.append(Problem(where, "framenum",
                                f"{counts_path}: {why}; expected a line '{name} <number of frames>'{hint}"))
        frame_count = video_count
    rows = None
    gt_path = directory / "gt" / "gt.txt"
    if load_gt and gt_path.is_file():
        parsed, gt_problems = parse_gt(gt_path, frame_count)
        problems.extend(Problem(where, "gt", m) for m in gt_problems)
        rows = None if gt_problems else tuple(parsed)
    return Camera(split=split, scenario=scenario, name=name, directory=directory, fps=fps,
                  frame_count=frame_count, offset_s=offset, problems=tuple(problems), _gt=rows)


def open_dataset(root: Path | str, *, strict: bool = False, load_gt: bool = True) -> Dataset:
    """List every split, scenario and camera under `root`; problems are collected (see the module
    docstring), or raised all together with `strict=True`."""
    root = Path(root)
    if not root.is_dir():
        raise SpecError([f"{root}: not a directory; expected the CityFlow layout DIR/<split>/S0X/cNNN/vdo.avi"])
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise SpecError([f"{root}: no {', '.join(SPLITS[:-1])} or {SPLITS[-1]} directory; "
                         f"expected the CityFlow layout DIR/<split>/S0X/cNNN/vdo.avi"])
    scenarios = []
    for split in splits:
        for sdir in sorted(p for p in (root / split).iterdir() if p.is_dir() and re.fullmatch(r"S\d+", p.name)):
            where = f"{split}/{sdir.name}"
            ts_path = root / "cam_timestamp" / f"{sdir.name}.txt"
            fn_path = root / "cam_framenum" / f"{sdir.name}.txt"
            offsets, p1, ts_unreadable = _read_table(ts_path, parse_finite, "start offset seconds", "timestamp", where)
            counts, p2, fn_unreadable = _read_table(fn_path, parse_count, "number of frames", "framenum", where)
            cam_dirs = sorted(p for p in sdir.iterdir() if p.is_dir() and re.fullmatch(r"c\d+", p.name))
            problems = p1 + p2
            if not cam_dirs:
                problems.append(Problem(where, "layout", f"{sdir}: no camera directories (cNNN)"))
            cams = tuple(_open_camera(split, sdir.name, d, offsets, counts, ts_path, fn_path, load_gt,
                                      (ts_unreadable, fn_unreadable))
                         for d in cam_dirs)
            scenarios.append(Scenario(split=split, name=sdir.name, cameras=cams, problems=tuple(problems)))
    dataset = Dataset(root=root, scenarios=tuple(scenarios))
    if strict:
        dataset.raise_for_problems()
    return dataset
