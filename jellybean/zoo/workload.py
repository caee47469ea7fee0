"""Representative inputs for profiling an operator as an agent runs it.

Frames come from a CityFlow-layout scene (the user's recordings, or a synthetic scene written for
the purpose), JPEG-encoded exactly as replay publishes them. Every other kind of item is made by
the zoo's own operators: the detector's outputs (boxes and crops) feed re-ID, re-ID's outputs feed
the tracker, and so on, each produced by the most accurate variant of the operator that makes it.
So a re-ID profile sees the crops, and the number of crops per frame, that its detector delivers.

The items reach the profiling agents over the broker, in the data topics' wire format.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jellybean.agents.items import Item
from jellybean.agents.operators.base import OperatorConfig, create, lookup, runtime_for
from jellybean.errors import JellyBeanError, NotSupportedError
from jellybean.spec.zoo import Variant, Zoo, ZooOperator

log = logging.getLogger("jellybean.zoo")

FRAME = "frame"
DEFAULT_FRAMES = 200
# The synthetic scene written when no scene is given: the example's cameras (640x360, 10 fps).
SYNTHETIC = dict(cameras=2, seconds=10.0, seed=11)

Tick = Callable[[str], None]


@dataclass(frozen=True)
class Workload:
    """Items of each kind, in capture order, and where they came from."""

    items: dict[str, list[Item]]
    source: str                                   # "synthetic scene 640x360, 2 cameras"
    made_by: dict[str, str]                       # kind -> "detect/det-w100"

    def describe(self, kind: str) -> str:
        """What a profile of an operator fed `kind` was measured on, for the manifest."""
        items = self.items[kind]
        text = f"{len(items)} {kind} items from {self.source}"
        if kind in self.made_by:
            units = sum(i.units for i in items)
            text += f" through {self.made_by[kind]}, {units / max(1, len(items)):.2f} per item"
        return text


def runtime_class(op: ZooOperator, variant: Variant):
    """The registered implementation a variant runs, or NotSupportedError."""
    return lookup(runtime_for(op.task, variant.runtime))


def scene_frames(scene: Path, limit: int) -> tuple[list[Item], str]:
    """Up to `limit` frames of the scene's first scenario, all cameras merged in capture order."""
    from jellybean.replay.cityflow import open_dataset
    from jellybean.replay.driver import encode_frame, playable_cameras, schedule

    try:
        dataset = open_dataset(scene, load_gt=False)
    except JellyBeanError as exc:
        raise JellyBeanError(f"--scene: {exc}") from None
    if not dataset.scenarios:
        raise JellyBeanError(f"--scene {scene}: no scenario with video in this directory; give a CityFlow-layout "
                             "directory (train/S01/c001/vdo.avi, ...) or leave --scene out for a synthetic scene")
    scenario = dataset.scenarios[0]
    problems: list[str] = []
    cameras = playable_cameras(scenario, problems)
    frames: list[Item] = []
    size = None
    for _, camera, frame, image in schedule(cameras, problems):
        frames.append(encode_frame(camera, frame, image, capture_ts=0.0))
        size = size or f"{image.shape[1]}x{image.shape[0]}"
        if len(frames) >= limit:
            break
    if not frames:
        raise JellyBeanError(f"--scene {scene}: no frame could be decoded ({'; '.join(problems) or 'empty videos'})")
    return frames, f"{scene} {scenario.name} ({size}, {len(cameras)} cameras)"


def synthetic_frames(limit: int) -> tuple[list[Item], str]:
    from jellybean.replay.scene import SceneConfig, write_scene

    with tempfile.TemporaryDirectory(prefix="jellybean-workload-") as tmp:
        config = SceneConfig(**SYNTHETIC)
        write_scene(Path(tmp) / "scene", config)
        frames, _ = scene_frames(Path(tmp) / "scene", limit)
    return frames, f"a synthetic scene ({config.width}x{config.height}, {config.cameras} cameras, seed {config.seed})"


def reference_variant(op: ZooOperator) -> Variant:
    """The variant whose outputs stand for the operator's: the most accurate (the first of equals)."""
    return max(op.variants, key=lambda v: v.accuracy or 0.0)


def run_over(op_name: str, variant: Variant, zoo_dir: Path, task: str, items: list[Item], threads: int | None
             ) -> list[Item]:
    """`items` through one instance of the variant's operator, in order, as a worker would see them."""
    runtime = runtime_for(task, variant.runtime)
    model = zoo_dir / variant.model if variant.model else None
    cls = lookup(runtime)
    step = 8 if cls.keyed == "item" else 1
    out: list[Item] = []
    with create(runtime, OperatorConfig(operator=op_name, variant=variant.name, model=model, threads=threads,
                                        batch=step, params=dict(variant.params))) as operator:
        for k in range(0, len(items), step):
            out.extend(operator.process(items[k:k + step]))
    return out


def build_workload(zoo: Zoo, zoo_dir: Path, scene: Path | None = None, *, frames: int = DEFAULT_FRAMES,
                   threads: int | None = None, tick: Tick | None = None) -> Workload:
    """Frames from `scene` (or a synthetic one), and every kind the zoo's operators can make of them."""
    tick = tick or (lambda _d: None)
    if frames < 1:
        raise JellyBeanError(f"--frames: give at least 1 frame (got {frames})")
    tick("inputs: frames")
    items, source = scene_frames(scene, frames) if scene is not None else synthetic_frames(frames)
    workload: dict[str, list[Item]] = {FRAME: items}
    made_by: dict[str, str] = {}
    producers: list[tuple[ZooOperator, Variant, type]] = []
    for op in zoo.operators:
        variant = reference_variant(op)
        try:
            producers.append((op, variant, runtime_class(op, variant)))
        except NotSupportedError:
            continue
    progress = True
    while progress:
        progress = False
        for op, variant, cls in producers:
            if cls.produces in workload or not any(k in workload for k in cls.accepts):
                continue
            kind = next(k for k in cls.accepts if k in workload)
            tick(f"inputs: {op.name}/{variant.name} on {len(workload[kind])} {kind} items")
            outputs = [o for o in run_over(op.name, variant, zoo_dir, op.task, workload[kind], threads)
                       if o.dropped is None]
            if outputs:
                workload[cls.produces] = outputs
                made_by[cls.produces] = f"{made_by[kind]} -> {op.name}/{variant.name}" if kind in made_by \
                    else f"{op.name}/{variant.name}"
                progress = True
    log.info("workload: %s", ", ".join(f"{len(v)} {k}" for k, v in workload.items()))
    return Workload(workload, source, made_by)
