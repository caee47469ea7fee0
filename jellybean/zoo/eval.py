"""`jellybean zoo eval`: measure every evaluable variant of a zoo and record it in the manifest.

For every variant of every operator in ZOO_DIR/manifest.yaml whose operator `task` has an
evaluator (`jellybean.zoo.evaluators`) and whose `model` file exists, the model is opened through
`jellybean.agents.backends.open_backend` (ONNX Runtime, or TensorRT for engines), evaluated on the
data directory, and its `metrics` and headline `accuracy` are written back into the manifest
through `jellybean.zoo.manifest.update_manifest` (under the zoo directory's lock, validated, then
atomically: a temporary file in the same directory and `os.replace`). Which metric the headline
`accuracy` is comes with each result (`accuracy_metric`: `ap50`, COCO AP@0.5 computed by
pycocotools, for detection; `rank1` for re-ID; `top1` for classification). Each task's data is loaded
and checked once, before any model runs, so a bad data directory fails fast with a message naming
it and what is expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from jellybean.errors import JellyBeanError
from jellybean.zoo import evaluators as ev

MANIFEST = "manifest.yaml"
MIN_ACCURACY = 1e-6          # the manifest needs accuracy > 0; a model that scores 0 gets this floor

# (label "operator/variant", done, total): forward to rich as
#   progress.update(task_of[label], completed=done, total=total)
ZooProgress = Callable[[str, int, int], None]


def rich_progress(bar: Any) -> ZooProgress:
    """A `ZooProgress` that drives a `rich.progress.Progress`, one task (bar) per variant."""
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total or None)
        bar.update(tasks[label], completed=done, total=total or None)

    return update


# --- opening a model -----------------------------------------------------------------------------


def open_model(path: Path | str, **options: Any) -> Any:
    """A loaded backend for `path` (a context manager), from `jellybean.agents.backends`;
    `options` go to `open_backend` (e.g. `prefer="cpu"`, `intra_op_threads=1`)."""
    from jellybean.agents.backends import open_backend

    return open_backend(path, **options)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantEval:
    """One variant: `status` is evaluated, skipped (no model, no evaluator, missing file) or failed."""

    operator: str
    variant: str
    task: str
    status: str
    model: Path | None = None
    result: ev.EvalResult | None = None
    reason: str | None = None

    @property
    def accuracy(self) -> float | None:
        return None if self.result is None else self.result.accuracy

    @property
    def metrics(self) -> dict[str, float]:
        return {} if self.result is None else dict(self.result.metrics)

    @property
    def accuracy_metric(self) -> str | None:
        """The name of the metric `accuracy` is (e.g. "ap50": COCO AP@0.5 for detection)."""
        return None if self.result is None else (self.result.metric or None)

    @property
    def partial(self) -> bool:
        return self.result is not None and self.result.partial

    def as_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, "variant": self.variant, "task": self.task, "status": self.status,
                "model": None if self.model is None else str(self.model), "accuracy": self.accuracy,
                "accuracy_metric": self.accuracy_metric, "metrics": self.metrics, "partial": self.partial, "reason": self.reason,
                "warnings": [] if self.result is None else list(self.result.warnings)}


@dataclass(frozen=True)
class ZooEval:
    manifest: Path
    variants: tuple[VariantEval, ...]
    warnings: tuple[str, ...] = ()
    written: bool = False

    @property
    def evaluated(self) -> list[VariantEval]:
        return [v for v in self.variants if v.status == "evaluated"]

    @property
    def failed(self) -> list[VariantEval]:
        return [v for v in self.variants if v.status == "failed"]

    @property
    def partial(self) -> bool:
        """Some data could not be used, or some variant failed."""
        return any(v.partial for v in self.variants) or bool(self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {"manifest": str(self.manifest), "written": self.written, "partial": self.partial,
                "warnings": list(self.warnings), "variants": [v.as_dict() for v in self.variants]}


# --- the run -------------------------------------------------------------------------------------


def zoo_directory(zoo_dir: Path | str) -> Path:
    """ZOO_DIR, also when given as ZOO_DIR/manifest.yaml."""
    p = Path(zoo_dir)
    if p.is_file() and p.name == MANIFEST:
        return p.parent
    if p.is_file():
        raise JellyBeanError(f"{p}: give the zoo directory that holds {MANIFEST}, not another file")
    return p


def _data_for(task: str, data_dir: Path | str | Mapping[str, Path | str]) -> Path:
    if isinstance(data_dir, Mapping):
        if task not in data_dir:
            raise JellyBeanError(f"no data directory for task '{task}'; given for: {', '.join(data_dir) or 'none'}")
        return Path(data_dir[task])
    return Path(data_dir)


def evaluate_zoo(zoo_dir: Path | str, data_dir: Path | str | Mapping[str, Path | str], *,
                 tasks: Iterable[str] | None = None, max_frames: int | None = None, every: int = 1,
                 options: Mapping[str, Mapping[str, Any]] | None = None, progress: ZooProgress | None = None,
                 backend_options: Mapping[str, Any] | None = None, write: bool = True) -> ZooEval:
    """Evaluate every variant of ZOO_DIR's manifest that can be, and write `metrics` and `accuracy`
    into the manifest (unless `write=False`).

    `data_dir` is one directory for every task, or a mapping task -> directory; `tasks` restricts
    the run to these tasks; `max_frames` / `every` sample the data (frames, or images for
    classification); `options` gives per-task evaluator options, e.g.
    `{"detection": {"letterbox": True, "classes": [2, 3, 5, 7]}}`; `backend_options` go to
    `open_backend` (e.g. `{"prefer": "cpu"}`)."""
    from jellybean.zoo.manifest import load_zoo, manifest_path

    directory = zoo_directory(zoo_dir)
    zoo = load_zoo(directory)
    path = manifest_path(directory)
    wanted = None if tasks is None else list(dict.fromkeys(tasks))
    for t in wanted or ():
        ev.get_evaluator(t)              # unknown task: error listing the known ones
    options = dict(options or {})
    for t in options:
        ev.get_evaluator(t)

    variants: list[VariantEval] = []
    jobs: list[tuple[int, VariantEval]] = []
    warnings: list[str] = []
    for op in zoo.operators:
        if wanted is not None and op.task not in wanted:
            continue
        for v in op.variants:
            if not ev.has_evaluator(op.task):
                variants.append(VariantEval(op.name, v.name, op.task, "skipped",
                                            reason=f"no evaluator for task '{op.task}' "
                                                   f"(known: {', '.join(ev.known_tasks())})"))
                continue
            if v.model is None:
                variants.append(VariantEval(op.name, v.name, op.task, "skipped", reason="built-in (no model file)"))
                continue
            model = path.parent / v.model
            if not model.is_file():
                reason = f"{model}: model file missing"
                warnings.append(f"{op.name}/{v.name}: {reason}")
                variants.append(VariantEval(op.name, v.name, op.task, "skipped", model, reason=reason))
                continue
            jobs.append((len(variants), VariantEval(op.name, v.name, op.task, "pending", model)))
            variants.append(jobs[-1][1])
    if not jobs:
        why = "; ".join(f"{v.operator}/{v.variant}: {v.reason}" for v in variants) or "no operator has a matching task"
        raise JellyBeanError(f"{path}: nothing to evaluate ({why}); evaluable tasks: {', '.join(ev.known_tasks())}")

    # each task's data once, checked before any model runs
    data: dict[str, Any] = {}
    for task in dict.fromkeys(j.task for _, j in jobs):
        opts = {"max_frames": max_frames, "every": every, **options.get(task, {})}
        data[task] = ev.load_data(task, _data_for(task, data_dir), **opts)

    for index, job in jobs:
        label = f"{job.operator}/{job.variant}"
        evaluator = ev.get_evaluator(job.task)
        opts = ev.accepted_options(evaluator, {"max_frames": max_frames, "every": every, **options.get(job.task, {})})
        last = [0, 0]

        def report(done: int, total: int, label: str = label, last: list = last) -> None:
            last[:] = [done, total]
            if progress is not None:
                progress(label, done, total)

        try:
            with open_model(job.model, **dict(backend_options or {})) as backend:
                result = evaluator(backend, data[job.task], progress=report, **opts)
        except JellyBeanError as exc:       # a model that does not load or does not fit: go on with the rest
            variants[index] = VariantEval(job.operator, job.variant, job.task, "failed", job.model, reason=str(exc))
            warnings.append(f"{label}: failed: {exc}")
            continue
        if progress is not None and last[1]:
            progress(label, last[1], last[1])
        variants[index] = VariantEval(job.operator, job.variant, job.task, "evaluated", job.model, result)
        for w in result.warnings:
            if w not in warnings:
                warnings.append(w)

    written = False
    if write and any(v.status == "evaluated" for v in variants):
        warnings.extend(_write_results(directory, [v for v in variants if v.status == "evaluated"]))
        written = True
    return ZooEval(path, tuple(variants), tuple(warnings), written)


def _clean(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        return 0.0
    return round(value, 6)


def _write_results(directory: Path, results: list[VariantEval]) -> list[str]:
    """Merge `metrics` and set `accuracy` of each evaluated variant, in one locked, atomic update
    of the manifest as it is now (edits made while the models ran are kept)."""
    from jellybean.zoo.manifest import set_metrics, update_manifest

    notes: list[str] = []

    def change(zoo):
        if zoo is None:
            raise JellyBeanError(f"{directory}: the manifest disappeared while the models ran; nothing written")
        notes.clear()
        for r in results:
            op = zoo.operator(r.operator)
            if op is None or op.variant(r.variant) is None:
                notes.append(f"{r.operator}/{r.variant}: no longer in the manifest; its results were not written")
                continue
            acc = _clean(r.accuracy)
            if acc <= 0:
                notes.append(f"{r.operator}/{r.variant}: headline accuracy is 0; recorded as {MIN_ACCURACY:g} "
                             f"(the manifest needs accuracy > 0)")
                acc = MIN_ACCURACY
            zoo = set_metrics(zoo, r.operator, r.variant, {k: _clean(v) for k, v in r.metrics.items()}, acc)
        return zoo

    update_manifest(directory, change)
    return notes
