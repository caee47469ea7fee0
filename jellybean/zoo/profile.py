"""Profile every variant of a zoo on this machine and record it under ``profiles[HARDWARE]``.

For each variant (ONNX through ONNX Runtime on the best execution provider here, TensorRT
engines natively when ``tensorrt`` imports), in a fresh process of its own:

1. load the model and build seeded random inputs of its shapes (floats in [0, 1));
2. for each batch size (batch 1 always; 1, 2, 4, 8 by default when the batch axis is dynamic,
   only the fixed size otherwise): ``warmup`` untimed runs, then timed runs until at least
   ``runs`` runs AND ``min_seconds`` have passed, or ``max_seconds`` (with at least 3 runs);
3. latency p50 / p90 / p99 (ms) of the batch-1 runs (for a model whose batch is fixed at N > 1:
   of the batch-N runs divided by N, the per-item figure the planner's capacity formula needs), throughput at batch b = b / median run time
   (items/s), the provider ORT actually used, a UTC timestamp;
4. peak memory: how much the process's peak resident set size (Linux ``VmHWM``) grew from just
   before the model was loaded (after ``import onnxruntime``, with the peak reset through
   ``/proc/self/clear_refs``) to the end of the last timed run, i.e. the host RAM that loading
   the variant and running it at the largest batch size takes (weights, arena, activations).
   It does not include GPU memory: on a GPU provider it is host memory only.

Reproducible within noise: medians, a fixed intra-op thread count (default: every core this
process may use), one process per variant so no variant inherits another's allocator state.
Running with ``isolate=False`` measures in this process and records no memory.
"""

from __future__ import annotations

import logging
import math
import os
import queue as queue_mod
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from jellybean.agents.backends import default_threads, open_backend, random_inputs, tensorrt_available
from jellybean.errors import JellyBeanError
from jellybean.spec.zoo import Profile, Zoo
from jellybean.zoo.manifest import load_zoo, set_profile, sha256_file, update_manifest

log = logging.getLogger("jellybean.zoo")

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8)
DEFAULT_HARDWARE = "local-cpu"
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
        }


# Memory (Linux /proc; getrusage elsewhere) ------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


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
    reset = _reset_peak() if measure_memory else False
    base_kb = _status_kb("VmRSS") if measure_memory else None
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
    peak_kb = _status_kb("VmHWM") if measure_memory else None
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
    isolate: bool = True,
    timeout: float = 600.0,
    progress: ProgressFn | None = None,
) -> ProfileResult:
    """Profile every variant of the zoo in ``zoo_dir`` and write ``profiles[hardware]`` of each.

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
    todo = [(op.name, v) for op in zoo.operators if wanted is None or op.name in wanted for v in op.variants]
    per_variant = len(sizes) + (0 if 1 in sizes else 1)
    total = max(1, len(todo) * per_variant)
    tick = progress or (lambda _d, _c, _t: None)
    done = 0
    measured: list[VariantProfile] = []
    skipped: list[tuple[str, str, str]] = []
    for op_name, variant in todo:
        label = f"{op_name}/{variant.name}"
        reason = None
        path = zoo_dir / variant.model if variant.model else None
        if path is None:
            reason = "no model file (a built-in operator)"
        elif not path.is_file():
            reason = f"model file {path} is missing; rebuild the zoo"
        elif path.suffix.lower() in (".engine", ".plan") and not tensorrt_available():
            reason = "TensorRT not installed: a TensorRT engine cannot run here"
        elif variant.sha256 and sha256_file(path) != variant.sha256:
            reason = f"{path} changed since the manifest was written (sha256 differs); rebuild the zoo"
        if reason is not None:
            skipped.append((op_name, variant.name, reason))
            done += per_variant
            tick(f"{label}: skipped", done, total)
            continue

        def on_batch(b: int, _label: str = label) -> None:
            nonlocal done
            done += 1
            tick(f"{_label} batch {b}", done, total)

        tick(f"{label}", done, total)
        job = dict(path=str(path), batch_sizes=sizes, warmup=warmup, runs=runs, min_seconds=min_seconds,
                   max_seconds=max_seconds, intra_op_threads=threads, provider=provider, dims=dict(dims or {}))
        start_done = done
        try:
            if isolate:
                numbers = _measure_isolated(job, on_batch, timeout)
            else:
                job_path = job.pop("path")
                numbers = measure_variant(job_path, on_batch=on_batch, **job)
        except JellyBeanError as exc:
            skipped.append((op_name, variant.name, str(exc)))
            log.warning("profiling %s skipped: %s", label, exc)
            done = start_done + per_variant
            tick(f"{label}: failed", done, total)
            continue
        done = start_done + per_variant
        profile = Profile(
            latency_ms=_round(numbers["latency_ms"]),
            p90_ms=_round(numbers["p90_ms"]),
            p99_ms=_round(numbers["p99_ms"]),
            throughput={int(b): _round(x) for b, x in numbers["throughput"].items()},
            peak_memory_mb=round(numbers["peak_memory_mb"], 1) if numbers["peak_memory_mb"] else None,
            execution_provider=numbers["execution_provider"],
            measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        measured.append(VariantProfile(op_name, variant.name, profile, numbers["runs"]))
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
    return ProfileResult(zoo_dir, hardware, threads, tuple(measured), tuple(skipped))


def _round(x: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (never to zero)."""
    if x <= 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")
