"""Sampled re-ID against exact re-ID for multi-camera association (issue 16, part 2).

    .venv/bin/python benchmarks/reid_sampling.py                    # seeds 301-304, 4 cameras, 20 s
    .venv/bin/python benchmarks/reid_sampling.py --seeds 305 306 --tau 0.9

Writes held-out synthetic scenes (seeds no recipe trains or tunes on: the detector trains on 1-5
and evaluates on 100, the associator's parameters were chosen on 1-11, the sampler's on 12-14),
and runs each through the shipped det-w100 detector and a motion-only SORT tracker, then through
re-ID + association twice (`jellybean.replay.sampling`): every crop embedded, and a growing sample
per track (`sampled-reid`, the given tau). Prints per scene and over all: re-ID inferences of each
(and how many of the exact run's crops were whole views, which alone the sampler embeds), their
ratio, the association decisions that match, and IDF1 of both. The bars: at least 3x fewer
inferences, at least 95 % of decisions matching, IDF1 within 0.5 points.

Deterministic: the scenes, the models (one thread) and the Sobol draws are seeded, so a rerun
prints the same figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from jellybean.cli.replay import open_scenario  # noqa: E402
from jellybean.replay.sampling import Comparison, compare_sampling  # noqa: E402
from jellybean.replay.scene import SceneConfig, write_scene  # noqa: E402

ZOO = ROOT / "model_zoo" / "aicity"


def scene(seed: int, cameras: int, seconds: float) -> Path:
    root = Path(tempfile.gettempdir()) / "jellybean-reid-sampling" / f"seed{seed}-c{cameras}-s{seconds:g}"
    if not (root / "done").exists():
        write_scene(root, SceneConfig(cameras=cameras, seconds=seconds, seed=seed, overwrite=True))
        (root / "done").write_text("")
    return root


def line(c: Comparison) -> str:
    e, a = c.exact, c.approx
    return (f"{c.scenario}: re-ID inferences exact {e.embedded} ({e.whole} whole views), approx {a.embedded} "
            f"-> {e.embedded / max(1, a.embedded):.2f}x fewer; decisions matching {c.matching}/{c.decisions} "
            f"({c.matching / max(1, c.decisions):.1%}); IDF1 exact {e.idf1:.4f}, approx {a.idf1:.4f} "
            f"({100 * (a.idf1 - e.idf1):+.2f} points)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[301, 302, 303, 304])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tau", type=float, default=0.95)
    args = parser.parse_args(argv)
    results: list[Comparison] = []
    started = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        for seed in args.seeds:
            task = progress.add_task(f"seed {seed}: scene", total=None)
            root = scene(seed, args.cameras, args.seconds)
            progress.update(task, description=f"seed {seed}: frames")
            results.append(compare_sampling(open_scenario(root, None), ZOO / "detector_w100.onnx",
                                            ZOO / "reid_w100.onnx", {"tau": args.tau},
                                            tick=lambda done, total, t=task: progress.update(t, completed=done,
                                                                                               total=total)))
            progress.console.print(f"seed {seed} " + line(results[-1]))
    exact = sum(c.exact.embedded for c in results)
    approx = sum(c.approx.embedded for c in results)
    whole = sum(c.exact.whole for c in results)
    matching = sum(c.matching for c in results)
    decisions = sum(c.decisions for c in results)
    idf1_e = sum(c.exact.idf1 for c in results) / len(results)
    idf1_a = sum(c.approx.idf1 for c in results) / len(results)
    ratio, share, points = exact / max(1, approx), matching / max(1, decisions), 100 * (idf1_a - idf1_e)
    crops = sum(c.exact.crops for c in results)
    ms_e = 1000 * sum(c.exact.seconds for c in results) / max(1, crops)
    ms_a = 1000 * sum(c.approx.seconds for c in results) / max(1, crops)
    print(f"\nall {len(results)} scenes (tau {args.tau:g}, {time.perf_counter() - started:.0f} s):")
    print(f"  re-ID inferences: exact {exact} (of which whole views {whole}), approx {approx}: "
          f"{ratio:.2f}x fewer (bar >= 3x: {'met' if ratio >= 3 else 'NOT met'}); "
          f"{whole / max(1, approx):.2f}x fewer than the whole views alone")
    print(f"  re-ID time per crop (model, sampling and decisions, one thread): exact {ms_e:.3f} ms, approx "
          f"{ms_a:.3f} ms: {ms_a / ms_e:.3f} of it")
    print(f"  association decisions matching the exact run: {matching}/{decisions} = {share:.1%} "
          f"(bar >= 95 %: {'met' if share >= 0.95 else 'NOT met'})")
    print(f"  IDF1 (mean over scenes): exact {idf1_e:.4f}, approx {idf1_a:.4f}, {points:+.2f} points "
          f"(bar within 0.5: {'met' if abs(points) <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
