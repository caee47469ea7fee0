"""`jellybean zoo build | profile | eval`: make a model zoo's variants and measure them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from jellybean.cli.app import app
from jellybean.cli.common import interrupt_on_sigterm
from jellybean.tables import fit, stdout_console
from jellybean.errors import JellyBeanError

console = stdout_console()
err_console = Console(stderr=True)

zoo_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Build a model zoo's variants (fp16, int8, pruned, TensorRT), profile them and evaluate them.",
)
app.add_typer(zoo_app, name="zoo")


# Shared option parsing ---------------------------------------------------------------------------


def _parse_dims(items: list[str] | None) -> dict[str, int]:
    dims: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().isdigit() or int(value) < 1:
            raise JellyBeanError(f"--dim: '{item}' is not NAME=N; give a dynamic dimension's name and its size, e.g. height=640")
        dims[name.strip()] = int(value)
    return dims


def _parse_list(option: str, text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise JellyBeanError(f"{option}: give a comma-separated list")
    return items


def _parse_batch_sizes(text: str | None) -> list[int] | None:
    items = _parse_list("--batch-sizes", text)
    if items is None:
        return None
    try:
        sizes = [int(x) for x in items]
    except ValueError:
        raise JellyBeanError(f"--batch-sizes: '{text}' is not a list of whole numbers; write e.g. 1,2,4,8") from None
    if any(b < 1 for b in sizes):
        raise JellyBeanError(f"--batch-sizes: batch sizes start at 1 (got {text})")
    return sizes


def _progress(quiet: bool) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=True, disable=quiet,
    )


def _quiet_logs(verbose: bool) -> None:
    """Skipped variants are shown in the result table; log them only with --verbose."""
    level = logging.INFO if verbose else logging.ERROR
    logging.getLogger("jellybean.zoo").setLevel(level)
    if verbose and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


# zoo build ---------------------------------------------------------------------------------------


@zoo_app.command("build")
def build(
    model: Annotated[Path, typer.Argument(metavar="MODEL.onnx", help="The fp32 ONNX model, exported with a dynamic batch axis.")],
    operator: Annotated[str, typer.Option("--operator", help="The workflow operator these variants implement.")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="ZOO_DIR", help="Zoo directory (created; merged into when it exists).")],
    calibration: Annotated[Optional[Path], typer.Option(
        "--calibration", metavar="DIR", help="Images (.jpg/.png), videos (.avi) or .npy tensors for int8 static calibration.")] = None,
    task: Annotated[str, typer.Option("--task", help="detection | reid | classification | generic (picks the evaluator).")] = "generic",
    variants: Annotated[Optional[str], typer.Option(
        "--variants", help="Comma-separated kinds to build: fp16, int8-dynamic, int8-static, pruned, channel-pruned, "
                           "trt-fp16, trt-int8 (default: all; fp32 is always built).")] = None,
    tensorrt: Annotated[Optional[bool], typer.Option(
        "--tensorrt/--no-tensorrt", help="Build TensorRT engines (default: when `tensorrt` is installed).")] = None,
    dim: Annotated[Optional[list[str]], typer.Option(
        "--dim", metavar="NAME=N", help="Size of a dynamic non-batch dimension, e.g. --dim height=640 (repeatable).")] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", min=1, help="Use at most this many samples.")] = 64,
    family: Annotated[Optional[str], typer.Option(
        "--family", help="Prefix for the variant names (e.g. w050), so variants of several base models of one "
                         "operator sit side by side; a rebuild replaces only that family.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ORT intra-op threads for validation.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log why layers and variants were skipped.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the variants built and skipped as JSON on stdout.")] = False,
) -> None:
    """Make fp32, fp16, int8 (dynamic, static), pruned and TensorRT variants; check each; add them to ZOO_DIR."""
    from jellybean.zoo.variants import build_variants

    _quiet_logs(verbose)
    progress = _progress(quiet or as_json)
    task_id = progress.add_task("starting", total=None)

    def tick(description: str, done: int, total: int) -> None:
        progress.update(task_id, description=f"{operator}: {description}", completed=done, total=total)

    with progress:
        result = build_variants(
            model, operator, output, calibration, task=task, include=_parse_list("--variants", variants),
            tensorrt=tensorrt, dims=_parse_dims(dim), calibration_samples=calibration_samples,
            intra_op_threads=threads, progress=tick, family=family,
        )

    if as_json:
        typer.echo(json.dumps({
            "operator": operator, "task": task, "manifest": str(result.manifest), "calibration": result.calibration,
            "variants": [{"name": v.name, "precision": v.precision, "model": v.model,
                          "mb": (output / v.model).stat().st_size / 2**20 if v.model else None,
                          "deviation_vs_fp32": result.deviation.get(v.name)} for v in result.operator.variants],
            "skipped": [{"variant": s.variant, "reason": s.reason} for s in result.skipped]}, indent=2))
        return
    table = Table(title=f"{operator} ({task}) -> {result.manifest}", title_justify="left")
    table.add_column("variant", no_wrap=True)
    table.add_column("precision")
    table.add_column("MB", justify="right")
    table.add_column("dev. vs fp32", justify="right", no_wrap=True)
    table.add_column("file", overflow="fold")
    for v in result.operator.variants:
        size = (output / v.model).stat().st_size / 2**20 if v.model else 0.0
        dev = result.deviation.get(v.name)
        table.add_row(v.name, v.precision or "", f"{size:.2f}", "" if dev is None else f"{dev:.2%}", v.model or "")
    if result.skipped:
        table.add_section()
        for s in result.skipped:
            table.add_row(f"[dim]{s.variant}[/]", "[dim]skipped[/]", "", "", f"[dim]{s.reason}[/]")
    console.print(fit(table))
    if result.calibration:
        console.print(f"calibration: {result.calibration}", highlight=False)
    console.print("dev. vs fp32: max |variant - fp32| / max |fp32| over the outputs, seeded random input, batch 2; "
                  "measure accuracy with `jellybean zoo eval`", style="dim", highlight=False)


# zoo profile -------------------------------------------------------------------------------------


def _check_catalog(hardware: str, catalog: Path) -> None:
    from jellybean.spec.base import load_model, unknown_name
    from jellybean.spec.hardware import HardwareCatalog, hardware_files

    if not catalog.exists():
        raise JellyBeanError(f"{catalog}: --catalog not found; give a hardware YAML file or a directory such as tiers/")
    names = {h.name for f in hardware_files(catalog) for h in load_model(HardwareCatalog, f).hardware}
    if hardware not in names:
        raise JellyBeanError(f"--hardware: {unknown_name('hardware', hardware, names)} in {catalog}")


def _rate(items_per_s: float) -> str:
    return f"{items_per_s:.0f}" if items_per_s >= 100 else f"{items_per_s:.1f}"


@zoo_app.command("profile")
def profile(
    ctx: typer.Context,
    zoo_dir: Annotated[Path, typer.Argument(metavar="ZOO_DIR", help="A zoo written by `jellybean zoo build`.")],
    hardware: Annotated[Optional[str], typer.Option(
        "--hardware", help="Name this machine has in your hardware catalog (tiers/*.yaml), e.g. hub-x86-minipc; "
                           "default: local-cpu.")] = None,
    batch_sizes: Annotated[Optional[str], typer.Option("--batch-sizes", help="Throughput batch sizes, e.g. 1,2,4,8.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measurements as JSON on stdout.")] = False,
    catalog: Annotated[Optional[Path], typer.Option(
        "--catalog", help="Hardware YAML file or directory; the --hardware name must be defined in it.")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="At least this many timed runs per batch size.")] = 30,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 5,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, help="And at least this long per batch size.")] = 1.0,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.01, help="At most this long per batch size.")] = 10.0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ORT intra-op threads (default: all cores).")] = None,
    provider: Annotated[Optional[str], typer.Option("--provider", help="cpu | cuda | tensorrt (default: the best available).")] = None,
    operator: Annotated[Optional[list[str]], typer.Option("--operator", help="Only these operators (repeatable).")] = None,
    dim: Annotated[Optional[list[str]], typer.Option("--dim", metavar="NAME=N", help="Size of a dynamic non-batch dimension.")] = None,
    scene: Annotated[Optional[Path], typer.Option(
        "--scene", help="A CityFlow-layout directory whose frames the operators are profiled on (default: a "
                        "synthetic scene, 640x360).")] = None,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames of the scene to make the inputs of.")] = 200,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure every variant as an agent runs it (decode, pre- and post-processing included) on frames of a
    scene and what the zoo's operators make of them: ms per item, throughput per batch size, peak memory,
    and the bare model's time beside it. Record them."""
    from jellybean.zoo.profile import DEFAULT_HARDWARE, profile_zoo

    _quiet_logs(False)
    interrupt_on_sigterm(ctx)   # a killed profile stops the agent and the broker it runs
    name = hardware or DEFAULT_HARDWARE
    if catalog is not None:
        _check_catalog(name, catalog)
    progress = _progress(quiet or as_json)
    task_id = progress.add_task("starting", total=None)

    def tick(description: str, done: int, total: int) -> None:
        progress.update(task_id, description=description, completed=done, total=total)

    with progress:
        result = profile_zoo(
            zoo_dir, name, _parse_batch_sizes(batch_sizes), warmup=warmup, runs=runs, min_seconds=min_seconds,
            max_seconds=max_seconds, intra_op_threads=threads, provider=provider, dims=_parse_dims(dim),
            operators=operator, scene=scene, frames=frames, progress=tick,
        )
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
        return
    sizes = sorted({b for m in result.measured for b in m.profile.throughput})
    table = Table(title=f"{zoo_dir} on {result.hardware} ({result.threads} threads); ms per item at batch 1 as "
                        "the operator runs it, items/s at batch b", title_justify="left")
    table.add_column("variant", no_wrap=True)
    for col in ("EP", "ms/item", "p90", "p99", "CPU ms", "model ms", *(f"b{b}/s" for b in sizes), "peak MB"):
        table.add_column(col, justify="left" if col == "EP" else "right", no_wrap=True)
    for m in result.measured:
        p = m.profile
        table.add_row(
            f"{m.operator}/{m.variant}", (p.execution_provider or "").replace("ExecutionProvider", ""),
            f"{p.latency_ms:.3f}", f"{p.p90_ms:.3f}", f"{p.p99_ms:.3f}",
            f"{p.cpu_ms:.3f}" if p.cpu_ms else "", f"{p.model_ms:.3f}" if p.model_ms else "",
            *(_rate(p.throughput[b]) if b in p.throughput else "" for b in sizes),
            f"{p.peak_memory_mb:.1f}" if p.peak_memory_mb else "",
        )
    if result.skipped:
        table.add_section()
        for op, var, reason in result.skipped:
            table.add_row(f"[dim]{op}/{var}[/]", "[dim]skipped[/]")
    for op, var, reason in result.skipped:
        console.print(f"skipped {op}/{var}: {reason}", style="dim", highlight=False)
    console.print(fit(table))
    inputs = sorted({m.profile.inputs for m in result.measured if m.profile.inputs})
    for text in inputs:
        console.print(f"measured on {text}", style="dim", highlight=False)
    for (op, var), note in result.notes.items():
        console.print(f"{op}/{var}: {note}", style="yellow", highlight=False)
    console.print("ms/item: per item of the plan (a frame, or one per box), as a saturated agent delivers it; "
                  "CPU ms: the agent's CPU time per item, all its threads; model ms: the bare model per call at "
                  "batch 1; peak MB: growth of the agent's (or bare model process's) peak RSS from loading the variant to its "
                  "last run (host RAM; GPU memory not included)", style="dim", highlight=False)
    if hardware is None:
        err_console.print(
            f"note: recorded as profiles.{name}; pass --hardware with this machine's name in your hardware catalog "
            "(tiers/*.yaml) so that `jellybean plan` uses these measurements", highlight=False,
        )


# zoo eval ----------------------------------------------------------------------------------------


@zoo_app.command("eval")
def evaluate(
    zoo_dir: Annotated[Path, typer.Argument(metavar="ZOO_DIR", help="A zoo written by `jellybean zoo build`.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: a CityFlow-layout directory (detection, "
                                                      "re-ID) or class folders (classification).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Evaluate at most this many frames.")] = None,
    every: Annotated[int, typer.Option("--every", min=1, help="Use every k-th frame.")] = 1,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Only these tasks (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure every variant's accuracy (AP@0.5, re-ID rank-1/mAP, top-1) and record it in the manifest."""
    from jellybean.zoo.eval import evaluate_zoo, rich_progress

    progress = _progress(quiet or as_json)
    with progress:
        result = evaluate_zoo(zoo_dir, data, tasks=task, max_frames=max_frames, every=every,
                              progress=rich_progress(progress))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    table = Table(title=f"{zoo_dir}: accuracy on {data}", title_justify="left")
    for col in ("variant", "task", "status", "accuracy", "metrics"):
        table.add_column(col, justify="right" if col == "accuracy" else "left")
    for v in result.variants:
        metrics = ", ".join(f"{k} {x:.4g}" if isinstance(x, float) else f"{k} {x}" for k, x in v.metrics.items())
        table.add_row(f"{v.operator}/{v.variant}", v.task, v.status,
                      "" if v.accuracy is None else f"{v.accuracy:.4f}", metrics or (v.reason or ""))
    console.print(fit(table))
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", highlight=False)
    if result.written:
        console.print(f"accuracy recorded in {result.manifest}", highlight=False)
