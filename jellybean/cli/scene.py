"""`jellybean scene DIR`: a synthetic traffic scenario in the AI City Challenge (CityFlow) layout."""

from __future__ import annotations

import dataclasses
import json

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from jellybean.cli.app import app
from jellybean.tables import fit, stdout_console

console = stdout_console()
err_console = Console(stderr=True)


@app.command()
def scene(
    directory: Annotated[Path, typer.Argument(help="Dataset root; writes DIR/<split>/<scenario>/cNNN/... and "
                                                   "DIR/cam_timestamp, DIR/cam_framenum.")],
    cameras: Annotated[int, typer.Option("--cameras", help="Number of cameras along the road.")] = 4,
    seconds: Annotated[float, typer.Option("--seconds", help="Length of every camera's video.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same scene (gt bytes and decoded frames).")] = 0,
    width: Annotated[int, typer.Option("--width", help="Frame width in pixels.")] = 640,
    height: Annotated[int, typer.Option("--height", help="Frame height in pixels.")] = 360,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second of every camera.")] = 10.0,
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario name, S01, S02, ...")] = "S01",
    split: Annotated[str, typer.Option("--split", help="train | validation | test")] = "train",
    slow_camera: Annotated[Optional[int], typer.Option(
        "--slow-camera", help="Number (1..N) of one camera recording at --slow-fps (as c015 in AI City).")] = None,
    slow_fps: Annotated[float, typer.Option("--slow-fps", help="Frame rate of --slow-camera.")] = 8.0,
    first_camera: Annotated[int, typer.Option(
        "--first-camera", help="Number of the first camera's name (AI City numbers cameras across scenarios).")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing, non-empty scenario.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Write one synthetic scenario: videos, ROI, calibration, ground truth, camera offsets and frame counts."""
    from jellybean.replay.scene import SceneConfig, write_scene

    config = SceneConfig(cameras=cameras, seconds=seconds, seed=seed, width=width, height=height, fps=fps,
                         scenario=scenario, split=split, slow_camera=slow_camera, slow_fps=slow_fps,
                         first_camera=first_camera, overwrite=overwrite)
    config.check()
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
        TimeRemainingColumn(), console=err_console, transient=True, disable=quiet or as_json,
    )
    task = progress.add_task(f"{scenario} simulating", total=sum(config.frame_counts()))

    def on_frame(done: int, total: int, camera: str) -> None:
        progress.update(task, completed=done, total=total, description=f"{scenario} {camera}")

    with progress:
        summary = write_scene(directory, config, on_frame=on_frame)

    if as_json:
        typer.echo(json.dumps({
            "directory": str(summary.directory), "scenario": summary.scenario, "split": summary.split,
            "frames": summary.frames, "vehicles": summary.vehicles, "gt_boxes": summary.gt_boxes,
            "cameras": [dataclasses.asdict(c) for c in summary.cameras]}, indent=2))
        return
    table = Table(title=f"{summary.directory}", title_justify="left")
    for col in ("camera", "fps", "frames", "offset s", "vehicles", "gt boxes"):
        table.add_column(col, justify="left" if col == "camera" else "right")
    for cam in summary.cameras:
        table.add_row(cam.name, f"{cam.fps:g}", str(cam.frames), f"{cam.offset_s:.3f}", str(cam.vehicles),
                      str(cam.gt_boxes))
    table.add_section()
    table.add_row(f"{len(summary.cameras)} cameras", "", str(summary.frames), "", str(summary.vehicles),
                  str(summary.gt_boxes), style="bold")
    console.print(fit(table))
