"""Profile every variant of a zoo on this machine and record it under ``profiles[HARDWARE]``.

A variant is measured as an agent runs it, because that is what the planner's capacities must be
(``1000 / latency_ms`` items/s per worker):

1. the workload: frames of a scene (``--scene``, or a synthetic one) as replay publishes them, and
   what the zoo's own operators make of them (`jellybean.zoo.workload`): a re-ID variant is fed the
   detector's boxes and crops, a tracker the re-ID features;
2. one real agent process per variant (`jellybean.zoo.saturate`), on a local broker (Mosquitto,
   else the embedded one), given the variant as its one task at each batch size (1 always; 1, 2,
   4, 8 by default for operators that take any items; 1 for stream-keyed ones such as trackers)
   and kept saturated: ``warmup`` outputs untimed, then until ``runs`` outputs AND ``min_seconds``,
   or ``max_seconds`` (with at least 3 outputs);
3. rates count the plan's items (``Item.units``: a frame, or one per box): ``latency_ms`` is the
   seconds per item at batch 1 (so the capacity formula gives exactly the measured rate), p90/p99
   the per-item time between consecutive outputs at batch 1, throughput at batch b the items/s,
   ``cpu_ms`` the agent process's CPU time per item at batch 1, all threads (what the operator
   costs a machine whose cores several operators share);
4. beside it, the bare model (``InferenceSession.run`` on seeded random tensors, batch 1, in a fresh
   process, timed for at most ``BARE_S`` of ``min_seconds``): ``model_ms``, for comparison only. A
   variant that no registered operator runs (a plain classifier) is profiled as its bare model at
   every batch size and says so (``basis: model``);
5. peak memory: how much the agent's peak resident set size (Linux ``VmHWM``) grew from when it
   came up (``onnxruntime`` imported, the peak reset through ``/proc/PID/clear_refs``) to the end of
   its last run; for a bare model, the same in its own process. GPU memory is not included.

Reproducible within noise: a fixed intra-op thread count, passed to the agent through its task
(default: every core this process may use; `jellybean up` runs agents with 1), one process per
variant so no variant inherits another's allocator state. ``isolate=False`` measures bare models
in this process and records no memory for them.
"""

from __future__ import annotations

import logging
import math
import os
import queue as queue_mod
import re
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from jellybean.agents.backends import ONNX_SUFFIXES, default_threads, open_backend, random_inputs, tensorrt_available
from jellybean.agents.broker import start_local_broker
from jellybean.agents.items import Item
from jellybean.agents.messages import Task
from jellybean.agents.operators.base import lookup, runtime_for
from jellybean.errors import JellyBeanError, NotSupportedError
from jellybean.spec.zoo import Profile, Variant, Zoo, ZooOperator
from jellybean.zoo.manifest import load_zoo, set_profile, sha256_file, update_manifest
from jellybean.zoo.procfs import reset_peak, status_kb
from jellybean.zoo.saturate import AgentBench, Saturated
from jellybean.zoo.workload import DEFAULT_FRAMES, build_workload, runtime_class

log = logging.getLogger("jellybean.zoo")

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8)
DEFAULT_HARDWARE = "local-cpu"
# The bare model beside an operator's profile is timed for at most this long (at least, when
# `min_seconds` asks for more): its figure is for comparison, and a bare model call is steady.
BARE_S = 1.0
# How long a batching worker may wait to fill a batch; a saturated agent never waits.
BATCH_WINDOW_MS = 1000.0
_HARDWARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VariantProfile:
    operator: str
    variant: str
    profile: Profile
    runs: dict[int, int]  # timed runs per batch size


@dataclass(frozen=True)
class ProfileResult:
    zoo_dir: Path
    hardware: str
    threads: int
    measured: tuple[VariantProfile, ...]
    skipped: tuple[tuple[str, str, str], ...]  # (operator, variant, reason)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # (operator, variant) -> caveat

    def as_json(self) -> dict[str, Any]:
        return {
            "zoo": str(self.zoo_dir),
            "hardware": self.hardware,
            "intra_op_threads": self.threads,
            "profiles": [
                {"operator": m.operator, "variant": m.variant, "runs": m.runs,
                 **m.profile.model_dump(mode="json", exclude_none=True)}
                for m in self.measured
            ],
            "skipped": [{"operator": o, "variant": v, "reason": r} for o, v, r in self.skipped],
            "notes": [{"operator": o, "variant": v, "note": n} for (o, v), n in self.notes.items()],
        }


# Timing -------------------------------------------------------------------------------------


def _timed_runs(run: Callable[[], Any], warmup: int, runs: int, min_seconds: float, max_seconds: float) -> np.ndarray:
    for _ in range(max(0, warmup)):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        elapsed = t1 - start
        if len(times) >= runs and elapsed >= min_seconds:
            break
        if elapsed >= max_seconds and len(times) >= min(3, runs):
            break
    return np.asarray(times)


def measure_variant(
    path: str | os.PathLike,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    *,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 1.0,
    max_seconds: float = 10.0,
    intra_op_threads: int | None = None,
    provider: str | None = None,
    dims: Mapping[str, int] | None = None,
    measure_memory: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Time one model file in this process; return the numbers ``Profile`` is made of."""
    path = Path(path)
    options: dict[str, Any] = {}
    if path.suffix.lower() == ".onnx":
        import onnxruntime  # noqa: F401  (imported before the memory baseline)

        options["intra_op_threads"] = intra_op_threads or default_threads()
    else:
        from jellybean.agents.backends import import_tensorrt

        import_tensorrt()
    reset = reset_peak() if measure_memory else False
    base_kb = status_kb("VmRSS") if measure_memory else None
    with open_backend(path, prefer=provider, **options) as backend:
        fixed = [s.shape[0] for s in backend.input_specs if s.shape and s.shape[0] is not None]
        if fixed:
            sizes = [fixed[0]]
        else:
            sizes = sorted({1, *(int(b) for b in batch_sizes)})
        samples: dict[int, np.ndarray] = {}
        for b in sizes:
            feed = random_inputs(backend.input_specs, b, dims, seed=b, source=path)
            samples[b] = _timed_runs(lambda: backend.infer(feed), warmup, runs, min_seconds, max_seconds)
            if on_batch is not None:
                on_batch(b)
        provider_used = backend.provider
    peak_kb = status_kb("VmHWM") if measure_memory else None
    first = sizes[0]
    lat = samples[first] * 1000.0
    p50, p90, p99 = (float(np.percentile(lat, q)) for q in (50, 90, 99))
    memory = None
    if peak_kb is not None and base_kb is not None and peak_kb > base_kb:
        memory = (peak_kb - base_kb) / 1024.0
    return {
        "latency_ms": p50 / first,  # per item when the batch is fixed above 1
        "p90_ms": p90 / first,
        "p99_ms": p99 / first,
        "throughput": {b: b / float(np.median(t)) for b, t in samples.items()},
        "peak_memory_mb": memory,
        "memory_exact": reset,
        "execution_provider": provider_used,
        "runs": {b: int(len(t)) for b, t in samples.items()},
    }


def measure_operator(
    bench: AgentBench,
    task: Task,
    items: list[Item],
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    *,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 1.0,
    max_seconds: float = 10.0,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Items/s of `task` in a real agent kept saturated (`AgentBench`), at each batch size: the rate a
    worker delivers. Rates count the plan's items (`Item.units`: a frame, or one per box)."""
    sizes = sorted({1, *(int(b) for b in batch_sizes)}) if task.keyed == "item" else [1]
    results: dict[int, Saturated] = {}
    for b in sizes:
        batched = task.model_copy(update={"batch": b, "max_batch_latency_ms": BATCH_WINDOW_MS if b > 1 else 0.0})
        results[b] = bench.saturate(batched, items, warmup=warmup, runs=runs, min_seconds=min_seconds,
                                    max_seconds=max_seconds, session=f"profile-b{b}-{time.time_ns():x}")
        if on_batch is not None:
            on_batch(b)
    rate = {b: r.rate for b, r in results.items() if r.rate > 0}
    if 1 not in rate:
        raise JellyBeanError(f"{task.operator}/{task.variant}: its inputs carry no items to process (no boxes "
                             "in any frame?); profile on a scene where the detector finds objects (--scene)")
    mean_ms = 1000.0 / rate[1]
    p90, p99 = results[1].percentile(90), results[1].percentile(99)
    return {
        # The capacity formula 1000 / latency_ms is then exactly the items/s measured at batch 1.
        "latency_ms": mean_ms,
        "p90_ms": max(p90, mean_ms),
        "p99_ms": max(p99, p90, mean_ms),
        "throughput": rate,
        "cpu_ms": results[1].cpu_ms,
        "runs": {b: r.outputs for b, r in results.items()},
    }


def _child_main(job: dict[str, Any], out: Any) -> None:
    """Entry point of the per-variant process: measure, report through ``out`` (a Queue)."""
    try:
        result = measure_variant(job.pop("path"), measure_memory=True, on_batch=lambda b: out.put(("batch", b)), **job)
        out.put(("result", result))
    except JellyBeanError as exc:
        out.put(("error", str(exc)))
    except BaseException as exc:  # report, never hang the parent
        out.put(("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))


def _measure_isolated(job: dict[str, Any], on_batch: Callable[[int], None], timeout: float) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited arenas, threads or RSS
    out = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(job, out), daemon=True, name="jellybean-profile")
    proc.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                kind, payload = out.get(timeout=0.2)
            except queue_mod.Empty:
                if not proc.is_alive():
                    try:
                        kind, payload = out.get(timeout=1.0)
                    except queue_mod.Empty:
                        raise JellyBeanError(
                            f"{job['path']}: the profiling process died (exit code {proc.exitcode})"
                        ) from None
                elif time.monotonic() > deadline:
                    raise JellyBeanError(f"{job['path']}: profiling took longer than {timeout:.0f} s; stopped")
                else:
                    continue
            if kind == "batch":
                on_batch(payload)
            elif kind == "result":
                return payload
            else:
                raise JellyBeanError(payload)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        out.close()


def profile_zoo(
    zoo_dir: str | os.PathLike,
    hardware: str = DEFAULT_HARDWARE,
    batch_sizes: Iterable[int] | None = None,
    *,
    warmup: int = 5,
    runs: int = 30,
    min_seconds: float = 1.0,
    max_seconds: float = 10.0,
    intra_op_threads: int | None = None,
    provider: str | None = None,
    dims: Mapping[str, int] | None = None,
    operators: Iterable[str] | None = None,
    scene: str | os.PathLike | None = None,
    frames: int = DEFAULT_FRAMES,
    isolate: bool = True,
    timeout: float = 600.0,
    progress: ProgressFn | None = None,
) -> ProfileResult:
    """Profile every variant of the zoo in ``zoo_dir`` and write ``profiles[hardware]`` of each.

    A variant whose operator the agents can run is profiled as that operator, on a workload made
    from ``scene`` (or a synthetic scene): decode, pre- and post-processing included. Its bare
    model time goes beside it as ``model_ms``. A variant no registered operator runs is profiled
    as its bare model, and says so (``basis: model``).

    Profiles of other hardware names already in the manifest are kept. A variant that cannot
    run here (a TensorRT engine without TensorRT, a file changed since the build, a model ORT
    rejects) is skipped with the reason; when none can be profiled, that is an error.
    """
    zoo_dir = Path(zoo_dir)
    if not hardware or not _HARDWARE_NAME.match(hardware):
        raise JellyBeanError(
            f"--hardware: '{hardware}' is not a usable hardware name; use the name from your hardware catalog "
            "(tiers/*.yaml), e.g. hub-x86-minipc"
        )
    sizes = tuple(sorted(set(int(b) for b in (batch_sizes or DEFAULT_BATCH_SIZES))))
    if not sizes or sizes[0] < 1:
        raise JellyBeanError(f"--batch-sizes: batch sizes must be whole numbers >= 1 (got {list(batch_sizes or [])})")
    if runs < 1 or warmup < 0 or min_seconds < 0 or max_seconds <= 0:
        raise JellyBeanError("runs must be >= 1, warmup >= 0, min_seconds >= 0 and max_seconds > 0")
    threads = intra_op_threads or default_threads()
    zoo: Zoo = load_zoo(zoo_dir)
    wanted = set(operators) if operators is not None else None
    if wanted is not None:
        unknown = wanted - {o.name for o in zoo.operators}
        if unknown:
            raise JellyBeanError(f"{zoo_dir}: no operator(s) {', '.join(sorted(unknown))} in the zoo")
    todo = [(op, v) for op in zoo.operators if wanted is None or op.name in wanted for v in op.variants]
    per_variant = len(sizes) + (0 if 1 in sizes else 1)
    total = max(1, len(todo) * per_variant)
    tick = progress or (lambda _d, _c, _t: None)
    done = 0
    measured: list[VariantProfile] = []
    skipped: list[tuple[str, str, str]] = []
    notes: dict[tuple[str, str], str] = {}
    timing = dict(warmup=warmup, runs=runs, min_seconds=min_seconds, max_seconds=max_seconds)
    feeds = _feeds(zoo, zoo_dir, todo, scene, frames, threads, lambda d: tick(d, done, total))
    broker = None
    with tempfile.TemporaryDirectory(prefix="jellybean-profile-") as tmp:
        try:
            for k, (op, variant) in enumerate(todo):
                label = f"{op.name}/{variant.name}"
                path = zoo_dir / variant.model if variant.model else None
                feed = feeds[(op.name, variant.name)]
                reason = _cannot_run(path, variant)
                if reason is None and path is None and isinstance(feed, str):
                    reason = f"a built-in operator that cannot be profiled here: {feed}"
                if reason is not None:
                    skipped.append((op.name, variant.name, reason))
                    done += per_variant
                    tick(f"{label}: skipped", done, total)
                    continue

                def on_batch(b: int, _label: str = label) -> None:
                    nonlocal done
                    done += 1
                    tick(f"{_label} batch {b}", done, total)

                tick(label, done, total)
                start_done = done
                bare = dict(path=str(path) if path else None, batch_sizes=sizes, intra_op_threads=threads,
                            provider=provider, dims=dict(dims or {}), **timing)
                try:
                    if isinstance(feed, str):  # no operator runs it: the bare model is all there is
                        numbers = _bare(bare, on_batch, isolate, timeout)
                        numbers.update(basis="model", model_ms=numbers["latency_ms"])
                        notes[(op.name, variant.name)] = f"bare model only: {feed}"
                    else:
                        if broker is None:
                            broker = start_local_broker(Path(tmp) / "broker")
                        bench = AgentBench(broker.url, zoo_dir, hardware, threads, Path(tmp) / "agents",
                                           name=f"profile-{k}")
                        numbers = _as_agent(bench, _task(op, variant, path, threads), feed, sizes, on_batch, timing)
                        if path is not None:
                            # For comparison only, and steady (no broker, no agent): a second does.
                            quick = dict(min_seconds=min(min_seconds, BARE_S), max_seconds=min(max_seconds, 2 * BARE_S))
                            model = _bare({**bare, "batch_sizes": (1,), **quick}, lambda _b: None, isolate, timeout)
                            numbers.update(model_ms=model["latency_ms"], execution_provider=model["execution_provider"])
                except JellyBeanError as exc:
                    skipped.append((op.name, variant.name, str(exc)))
                    log.warning("profiling %s skipped: %s", label, exc)
                    done = start_done + per_variant
                    tick(f"{label}: failed", done, total)
                    continue
                done = start_done + per_variant
                profile = _profile(numbers, threads, None if isinstance(feed, str) else feed.inputs)
                measured.append(VariantProfile(op.name, variant.name, profile, numbers["runs"]))
        finally:
            if broker is not None:
                broker.stop()
    if not measured:
        why = "; ".join(f"{o}/{v}: {r}" for o, v, r in skipped[:3])
        raise JellyBeanError(f"{zoo_dir}: no variant could be profiled here ({why})")

    def record(current: Zoo | None) -> Zoo:
        if current is None:
            raise JellyBeanError(f"{zoo_dir}: the manifest disappeared while profiling; rebuild the zoo")
        for m in measured:
            current = set_profile(current, m.operator, m.variant, hardware, m.profile,
                                  memory_mb=m.profile.peak_memory_mb)
        return current

    update_manifest(zoo_dir, record)
    tick("done", total, total)
    return ProfileResult(zoo_dir, hardware, threads, tuple(measured), tuple(skipped), notes)


def _cannot_run(path: Path | None, variant: Variant) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        return f"model file {path} is missing; rebuild the zoo"
    if path.suffix.lower() in (".engine", ".plan") and not tensorrt_available():
        return "TensorRT not installed: a TensorRT engine cannot run here"
    if variant.sha256 and sha256_file(path) != variant.sha256:
        return f"{path} changed since the manifest was written (sha256 differs); rebuild the zoo"
    return None


@dataclass(frozen=True)
class _Feed:
    items: list[Item]
    runtime: str
    inputs: str          # what the items are, for the manifest


def _feeds(zoo: Zoo, zoo_dir: Path, todo: list[tuple[ZooOperator, Variant]], scene: str | os.PathLike | None,
           frames: int, threads: int, tick: Callable[[str], None]) -> dict[tuple[str, str], "_Feed | str"]:
    """Per variant: the items to profile it as its operator on, or why it cannot be."""
    out: dict[tuple[str, str], _Feed | str] = {}
    runnable: list[tuple[ZooOperator, Variant, type]] = []
    for op, variant in todo:
        try:
            runnable.append((op, variant, runtime_class(op, variant)))
        except NotSupportedError as exc:
            out[(op.name, variant.name)] = f"no operator implementation runs it ({exc})"
    if not runnable:
        return out
    workload = build_workload(zoo, zoo_dir, Path(scene) if scene is not None else None, frames=frames,
                              threads=threads, tick=tick)
    for op, variant, cls in runnable:
        kind = next((k for k in cls.accepts if k in workload.items), None)
        if kind is None:
            out[(op.name, variant.name)] = f"nothing in the zoo makes its inputs ({', '.join(cls.accepts)}) from frames"
        else:
            out[(op.name, variant.name)] = _Feed(workload.items[kind], runtime_for(op.task, variant.runtime),
                                                 workload.describe(kind))
    return out


def _task(op: ZooOperator, variant: Variant, path: Path | None, threads: int) -> Task:
    """The one task a profiling agent runs: the variant, as a plan would assign it."""
    runtime = runtime_for(op.task, variant.runtime)
    return Task(operator=op.name, variant=variant.name, runtime=runtime, keyed=lookup(runtime).keyed, workers=1,
                model=variant.model, sha256=(variant.sha256 or sha256_file(path)) if path else None,
                size=path.stat().st_size if path else None, params=dict(variant.params), threads=threads)


def _as_agent(bench: AgentBench, task: Task, feed: _Feed, sizes: tuple[int, ...], on_batch: Callable[[int], None],
              timing: dict[str, Any]) -> dict[str, Any]:
    """The variant's figures as `bench`'s agent delivers them (the agent is stopped after)."""
    try:
        numbers = measure_operator(bench, task, feed.items, sizes, on_batch=on_batch, **timing)
        numbers["peak_memory_mb"] = bench.peak_memory_mb()
    finally:
        bench.close()
    numbers.update(basis="operator", model_ms=None, execution_provider=None)
    return numbers


def _bare(job: dict[str, Any], on_batch: Callable[[int], None], isolate: bool, timeout: float) -> dict[str, Any]:
    """The bare model's figures (`measure_variant`), in a fresh process unless `isolate` is off."""
    if isolate:
        return _measure_isolated(dict(job), on_batch, timeout)
    job = dict(job)
    return measure_variant(job.pop("path"), on_batch=on_batch, **job)


def _profile(numbers: dict[str, Any], threads: int, inputs: str | None) -> Profile:
    return Profile(
        latency_ms=_round(numbers["latency_ms"]),
        p90_ms=_round(numbers["p90_ms"]),
        p99_ms=_round(numbers["p99_ms"]),
        throughput={int(b): _round(x) for b, x in numbers["throughput"].items()},
        peak_memory_mb=round(numbers["peak_memory_mb"], 1) if numbers["peak_memory_mb"] else None,
        execution_provider=numbers["execution_provider"],
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model_ms=_round(numbers["model_ms"]) if numbers.get("model_ms") else None,
        cpu_ms=_round(numbers["cpu_ms"]) if numbers.get("cpu_ms") else None,
        basis=numbers["basis"],
        threads=threads,
        inputs=inputs,
    )


def _round(x: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (never to zero)."""
    if x <= 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")
