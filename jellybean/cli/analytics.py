"""`jellybean analytics`: the track store (generate, load) and the approximate congestion query."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jellybean.cli.app import app
from jellybean.tables import fit, stdout_console

console = stdout_console()
err_console = Console(stderr=True)

analytics_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Traffic analytics over stored tracks: fill a DuckDB track store and ask whether an approach will be "
         "congested in the next 5 minutes, approximately (Biathlon) or exactly.",
)
app.add_typer(analytics_app, name="analytics")

Store = Annotated[Path, typer.Argument(help="The track store, a DuckDB file.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _finite(name: str, value: float | None) -> None:
    from jellybean.analytics.errors import AnalyticsError

    if value is not None and not math.isfinite(value):
        raise AnalyticsError(f"{name} {value!r}: give a finite number")


@analytics_app.command()
def generate(
    path: Store,
    intersections: Annotated[int, typer.Option("--intersections", help="Intersections (4 approaches each).")] = 2,
    days: Annotated[float, typer.Option("--days", help="Days of history from midnight (a Monday).")] = 1.0,
    hz: Annotated[Optional[float], typer.Option("--hz", help="Observations per vehicle per second.")] = None,
    rows: Annotated[Optional[int], typer.Option(
        "--rows", help="Instead of --hz: the rate that gives about this many rows (e.g. 10000000).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same history.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing store.")] = False,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Write a synthetic history (diurnal demand, rush hours, queues) into a new store."""
    from jellybean.analytics import generate as gen, store

    _finite("--days", days)
    _finite("--hz", hz)
    from jellybean.analytics.errors import AnalyticsError

    cfg = gen.config(intersections=intersections, days=days, hz=hz, rows=rows, seed=seed)
    if path.exists() and not overwrite:  # before minutes of work, not after
        raise AnalyticsError(f"{path}: already exists; pass --overwrite to replace it, or choose another path")
    started = time.perf_counter()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("approaches"), TimeElapsedColumn(), console=err_console, transient=True,
                        disable=quiet or as_json)
    task = progress.add_task("generating", total=cfg.intersections * 4)
    with progress:
        columns, rate = gen.generate(cfg, on_chunk=lambda done, total: progress.update(task, completed=done))
        progress.update(task, description="writing to DuckDB")
        con = store.create(path, rate, overwrite=overwrite)
        try:
            written = store.insert(con, columns, shuffled=True)
        finally:
            con.close()
    seconds = time.perf_counter() - started
    summary = {"store": str(path), "rows": written, "hz": rate, "intersections": cfg.intersections,
               "days": cfg.days, "seed": cfg.seed, "seconds": round(seconds, 3)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    err_console.print(f"{written} observations ({cfg.intersections} intersections × 4 approaches, {cfg.days:g} "
                      f"day{'' if cfg.days == 1 else 's'}, "
                      f"{rate:.6g} per vehicle per second) written to {path} in {seconds:.1f} s", highlight=False,
                      soft_wrap=True)


@analytics_app.command()
def load(
    dataset: Annotated[Path, typer.Argument(help="A CityFlow-layout dataset root (`jellybean scene` writes one).")],
    path: Store,
    scenario: Annotated[Optional[str], typer.Option("--scenario", help="Only this scenario (S01, ...).")] = None,
    as_json: Json = False,
) -> None:
    """Add the ground-truth tracks of a CityFlow-layout dataset to a store (made if missing)."""
    from jellybean.analytics import load as loader
    from jellybean.analytics.errors import AnalyticsError

    if not dataset.is_dir():
        raise AnalyticsError(f"{dataset}: no such dataset directory; write one with `jellybean scene {dataset}`")
    columns, hz = loader.from_dataset(dataset, scenario)
    written = loader.write(path, columns, hz)
    cameras = sorted({(i, a) for i, a in zip(columns["intersection"], columns["approach"])})
    if as_json:
        typer.echo(json.dumps({"store": str(path), "rows": written, "hz": hz,
                               "approaches": [f"{i}/{a}" for i, a in cameras]}, indent=2))
        return
    err_console.print(f"{written} observations from {len(cameras)} cameras ({hz:g} fps) written to {path}",
                      highlight=False, soft_wrap=True)


_CLOCK = re.compile(r"^(?:(\d+)d\s*)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_at(text: str) -> float:
    """Seconds on the store's clock from `SECONDS`, `HH:MM[:SS]` (day 0) or `Nd HH:MM[:SS]` (day N)."""
    from jellybean.analytics.errors import AnalyticsError

    match = _CLOCK.match(text.strip())
    if match:
        day, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        if hours < 24 and minutes < 60 and seconds < 60:
            return day * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AnalyticsError(f"--at {text!r}: give seconds on the store's clock (e.g. 30600), HH:MM on its first "
                             "day (08:30) or Nd HH:MM on day N (1d 17:45)")
    return value


def _clock(t: float) -> str:
    day, rest = divmod(t, 86400.0)
    return f"{int(day)}d {int(rest // 3600):02d}:{int(rest % 3600 // 60):02d}"


@analytics_app.command()
def query(
    path: Store,
    intersection: Annotated[str, typer.Option("--intersection", help="I01, ... (or a scenario name).")],
    approach: Annotated[str, typer.Option("--approach", help="N, E, S, W (or a camera name).")],
    at: Annotated[str, typer.Option("--at", help="When: seconds on the store's clock, HH:MM, or Nd HH:MM.")],
    tau: Annotated[float, typer.Option("--tau", help="Confidence that the answer is the exact one's, in (0, 1).")] = 0.95,
    delta: Annotated[Optional[float], typer.Option(
        "--delta", help="Answer P(congested) within this bound instead of the class.")] = None,
    approx: Annotated[bool, typer.Option(
        "--approx/--no-approx", help="Run the approximate query (the default); --no-approx --exact runs only the "
                                     "exact one.")] = True,
    exact_too: Annotated[bool, typer.Option("--exact", help="Also run the exact query and show both.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samples and the QMC draws.")] = 0,
    model_path: Annotated[Optional[Path], typer.Option(
        "--model", help="The model's manifest (default: model_zoo/analytics/congestion.yaml).")] = None,
    as_json: Json = False,
) -> None:
    """Will this approach be congested in the next 5 minutes? Approximate, with its confidence and sample
    fraction; --exact also runs the exact query."""
    from jellybean.analytics import store
    from jellybean.analytics.features import NAMES, Where, check_target
    from jellybean.analytics.model import DEFAULT, CongestionModel
    from jellybean.analytics.query import Options, approximate, exact

    _finite("--tau", tau)
    _finite("--delta", delta)
    options = Options(tau=tau, delta=delta, seed=seed)
    options.check()
    where = Where(intersection, approach, parse_at(at))
    if not (approx or exact_too):
        from jellybean.analytics.errors import AnalyticsError

        raise AnalyticsError("--no-approx leaves nothing to run; add --exact, or drop --no-approx")
    model = CongestionModel(model_path or DEFAULT)
    con = store.connect(path)
    try:
        check_target(con, where, str(path))
        result = approximate(con, model, where, options, checked=True) if approx else None
        exact_result = exact(con, model, where, options, checked=True) if exact_too else None
    finally:
        con.close()
    answer = (lambda v: "congested" if v >= 0.5 else "not congested") if delta is None else (lambda v: f"{v:.4f}")
    if as_json:
        out = {"intersection": intersection, "approach": approach, "t": where.t, "tau": tau, "delta": delta}
        if result is not None:
            out.update({"prediction": result.prediction, "answer": answer(result.prediction),
                        "confidence": result.confidence, "fractions": result.fractions, "read": result.read,
                        "rounds": result.rounds, "exact_read": result.exact, "seconds": result.seconds,
                        "features": {k: {"value": v, "stderr": e} for k, (v, e) in result.estimates.items()}})
        if exact_result is not None:
            out["exact"] = {"prediction": exact_result.prediction, "answer": answer(exact_result.prediction),
                            "seconds": exact_result.seconds, "features": dict(zip(NAMES, exact_result.features))}
            if result is not None:
                out["exact"]["speedup"] = exact_result.seconds / result.seconds
        typer.echo(json.dumps(out, indent=2))
        return
    what = "P(congested in the next 5 min)" if delta is not None else "congested in the next 5 min?"
    rule = f"τ = {tau:g}" + (f", δ = {delta:g}" if delta is not None else "")
    table = Table(title=f"{intersection}/{approach} at {_clock(where.t)}: {what} {rule}", title_justify="left")
    labels = ["answer", "confidence", "sample of the table, last hour", "sample of the table, last 15 min",
              "rows read / table", "time", *NAMES[:5]]
    table.add_column("")
    columns = [labels]
    if result is not None:
        table.add_column("approximate", justify="right")
        columns.append([answer(result.prediction), f"{result.confidence:.4f}", f"{result.fractions['hour']:.2%}",
                        f"{result.fractions['recent']:.2%}", f"{result.read:.2%} ({result.rounds} rounds)",
                        f"{result.seconds * 1000:.1f} ms",
                        *(f"{v:.4g} ± {e:.2g}" for v, e in (result.estimates[n] for n in NAMES[:5]))])
    if exact_result is not None:
        table.add_column("exact", justify="right")
        columns.append([answer(exact_result.prediction), "1", "100.00%", "100.00%", "100.00%",
                        f"{exact_result.seconds * 1000:.1f} ms", *(f"{v:.4g}" for v in exact_result.features[:5])])
    for row in zip(*columns):
        table.add_row(*row)
    console.print(fit(table))
    if result is not None and exact_result is not None:
        same = result.prediction == exact_result.prediction if delta is None else \
            abs(result.prediction - exact_result.prediction) <= delta
        console.print(f"speedup {exact_result.seconds / result.seconds:.1f}×; the approximate answer is "
                      f"{'within δ of ' if delta is not None else ''}{'the exact one' if same else 'NOT the exact one'}"
                      + ("" if delta is None else f" (|difference| {abs(result.prediction - exact_result.prediction):.4f})"),
                      highlight=False, soft_wrap=True)
