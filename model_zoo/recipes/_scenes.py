"""Training and evaluation data for the model-zoo recipes, cut from synthetic traffic scenes.

Scenes are written with the repo's own writer (`jellybean.replay.scene.write_scene`) into a
temporary directory and read back through the CityFlow reader (`jellybean.replay.cityflow`), so the
models see exactly what replay feeds them: MJPG-decoded BGR frames and gt rows
(frame, id, left, top, width, height) with ids global across a scenario's cameras.

Nothing here needs torch; the recipes import it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene


@dataclass(frozen=True)
class SceneSpec:
    """One synthetic scenario: `jellybean scene DIR --cameras C --seconds S --seed K --width W --height H`."""

    seed: int
    cameras: int
    seconds: float
    width: int = 640
    height: int = 360

    def command(self) -> str:
        return (f"jellybean scene DIR --cameras {self.cameras} --seconds {self.seconds:g} --seed {self.seed} "
                f"--width {self.width} --height {self.height}")


def write_scenes(root: Path, specs: list[SceneSpec], log=print) -> list[Path]:
    """Write each spec into its own directory under `root`; returns those directories. A directory
    this function wrote before for the same spec (its `scene.json` matches) is reused."""
    out = []
    for spec in specs:
        t = time.perf_counter()
        directory = Path(root) / f"seed{spec.seed:04d}"
        marker = directory / "scene.json"
        if marker.is_file() and json.loads(marker.read_text()) == asdict(spec):
            log(f"  scene seed {spec.seed}: reusing {directory}")
            out.append(directory)
            continue
        summary = write_scene(directory, SceneConfig(cameras=spec.cameras, seconds=spec.seconds, seed=spec.seed,
                                                     width=spec.width, height=spec.height, overwrite=True))
        log(f"  scene seed {spec.seed}: {len(summary.cameras)} cameras, {summary.frames} frames, "
            f"{summary.vehicles} vehicles, {summary.gt_boxes} gt boxes ({time.perf_counter() - t:.1f} s)")
        marker.write_text(json.dumps(asdict(spec)))
        out.append(directory)
    return out


def _gt_by_frame(camera) -> dict[int, list]:
    rows: dict[int, list] = {}
    for r in camera.gt():
        rows.setdefault(r.frame, []).append(r)
    return rows


def detection_frames(roots: list[Path], size: tuple[int, int], every: int = 1, offset: int = 0):
    """Every `every`-th frame (from frame 1 + offset) of every camera, resized (plain bilinear
    resize, no letterbox, as jellybean.zoo.yolo.preprocess does) to size = (W, H) and converted to
    RGB, with its gt boxes in input pixels.

    Returns (images uint8 [N, H, W, 3] RGB, boxes: list of float32 [k, 4] x1 y1 x2 y2 in input
    pixels, frame_sizes: list of (width, height) of the source frames, keys: list of 'camera:frame')."""
    W, H = size
    images, boxes, sizes, keys = [], [], [], []
    for root in roots:
        for cam in open_dataset(root, strict=True).cameras():
            gt = _gt_by_frame(cam)
            for k, frame in cam.frames():
                if (k - 1 - offset) % every:
                    continue
                fh, fw = frame.shape[:2]
                sx, sy = W / fw, H / fh
                rgb = cv2.cvtColor(cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
                b = np.array([[r.left * sx, r.top * sy, (r.left + r.width) * sx, (r.top + r.height) * sy]
                              for r in gt.get(k, [])], np.float32).reshape(-1, 4)
                images.append(rgb)
                boxes.append(b)
                sizes.append((fw, fh))
                keys.append(f"{root.name}/{cam.key}:{k}")
    return np.stack(images), boxes, sizes, keys


def crop_box(frame: np.ndarray, left: float, top: float, width: float, height: float, side: int) -> np.ndarray:
    """The box's pixels (rounded outwards, clipped to the frame, at least 1 px, no added context)
    resized to side x side with bilinear interpolation, BGR in, RGB out: exactly how the product
    (jellybean.zoo.evaluators.crop + jellybean.zoo.yolo.preprocess) cuts and resizes re-ID crops."""
    fh, fw = frame.shape[:2]
    x0 = min(max(int(math.floor(left)), 0), fw - 1)
    y0 = min(max(int(math.floor(top)), 0), fh - 1)
    x1 = max(min(int(math.ceil(left + width)), fw), x0 + 1)
    y1 = max(min(int(math.ceil(top + height)), fh), y0 + 1)
    crop = frame[y0:y1, x0:x1]
    return cv2.cvtColor(cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)


def reid_crops(roots: list[Path], side: int, every: int = 1, min_side: float = 12.0):
    """Crops of every gt box in every `every`-th frame whose sides are at least `min_side` pixels.

    Identities are made unique across roots (scene k's ids are offset by 100000 * k).
    Returns (crops uint8 [N, side, side, 3] RGB, ids int64 [N], cameras int64 [N] (unique across
    roots), frames int64 [N])."""
    crops, ids, cams, frames = [], [], [], []
    cam_index = 0
    for n, root in enumerate(roots):
        for cam in open_dataset(root, strict=True).cameras():
            gt = _gt_by_frame(cam)
            for k, frame in cam.frames():
                if (k - 1) % every:
                    continue
                for r in gt.get(k, []):
                    if min(r.width, r.height) < min_side:
                        continue
                    crops.append(crop_box(frame, r.left, r.top, r.width, r.height, side))
                    ids.append(100000 * n + r.id)
                    cams.append(cam_index)
                    frames.append(k)
            cam_index += 1
    return (np.stack(crops), np.array(ids, np.int64), np.array(cams, np.int64), np.array(frames, np.int64))


def set_io_shapes(proto, shapes: dict[str, list]) -> None:
    """Declare exact shapes on graph inputs/outputs (the TorchScript exporter leaves names such as
    'Concatoutput0_dim_1' where a dynamic batch flows through reshapes); str entries are dim_params."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        want = shapes[value.name]
        if len(dims) != len(want):
            raise SystemExit(f"{value.name}: exported with rank {len(dims)}, expected {len(want)}")
        for d, w in zip(dims, want):
            d.Clear()
            if isinstance(w, str):
                d.dim_param = w
            else:
                d.dim_value = int(w)
