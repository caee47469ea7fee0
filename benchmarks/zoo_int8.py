"""int8 against fp32 for the shipped detector, measured in one run on this machine.

Builds the fp32 and static-int8 (QDQ, calibrated on a synthetic scene) variants of a shipped
detector, times them in alternating rounds (so both see the same machine load), and evaluates
both on a held-out synthetic scene. Prints median latency and throughput per round, the speed
ratio int8/fp32 and the accuracy drop. Figures are medians over rounds; the machine is shared.

    python benchmarks/zoo_int8.py [--model model_zoo/aicity/detector_w100.onnx] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.zoo.eval import evaluate_zoo
from jellybean.zoo.manifest import load_zoo
from jellybean.zoo.profile import measure_variant
from jellybean.zoo.variants import build_variants

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "model_zoo/aicity/detector_w100.onnx")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: all cores)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per batch size and round")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    console = Console()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_scene(tmp / "calib", SceneConfig(cameras=2, seconds=3, seed=7))
        write_scene(tmp / "heldout", SceneConfig(cameras=4, seconds=10, seed=1001))
        zoo = tmp / "zoo"
        build_variants(args.model, "detect", zoo, tmp / "calib", task="detection", include=["int8-static"],
                       tensorrt=False)
        variants = {v.name: zoo / v.model for v in load_zoo(zoo).operator("detect").variants}
        names = ["fp32", "int8-static"]

        latency = {n: [] for n in names}  # batch-1 p50 per round
        rate = {(n, b): [] for n in names for b in batches}
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("timing", total=args.rounds * len(names))
            for _ in range(args.rounds):
                for n in names:  # alternate so that both see the same load
                    m = measure_variant(variants[n], batches, warmup=5, runs=20, min_seconds=args.seconds,
                                        max_seconds=args.seconds * 3, intra_op_threads=args.threads)
                    latency[n].append(m["latency_ms"])
                    for b in batches:
                        rate[n, b].append(m["throughput"][b])
                    progress.advance(task)
            accuracy = evaluate_zoo(zoo, tmp / "heldout", write=False, every=2)

    metric = {v.variant: v.metrics for v in accuracy.variants}
    table = Table(title=f"{args.model.name}: fp32 vs int8 (static QDQ), medians over {args.rounds} rounds",
                  title_justify="left")
    for col in ("variant", "p50 ms (b1)", *(f"items/s b{b}" for b in batches), "AP@0.5", "AP@0.5:0.95"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for n in names:
        table.add_row(n, f"{statistics.median(latency[n]):.3f}",
                      *(f"{statistics.median(rate[n, b]):.0f}" for b in batches),
                      f"{metric[n]['ap50']:.4f}", f"{metric[n]['ap50_95']:.4f}")
    console.print(table)
    speed = statistics.median(latency["fp32"]) / statistics.median(latency["int8-static"])
    console.print(f"int8 speed-up at batch 1 (fp32 p50 / int8 p50): {speed:.2f}x")
    for b in batches:
        ratio = statistics.median(rate["int8-static", b]) / statistics.median(rate["fp32", b])
        console.print(f"int8 throughput ratio at batch {b} (int8 / fp32): {ratio:.2f}x")
    console.print(f"accuracy drop (fp32 - int8): AP@0.5 {metric['fp32']['ap50'] - metric['int8-static']['ap50']:+.4f}, "
                  f"AP@0.5:0.95 {metric['fp32']['ap50_95'] - metric['int8-static']['ap50_95']:+.4f}")


if __name__ == "__main__":
    main()
