"""The approximate congestion query against the exact one on a large track store (issue 16, part 3).

    .venv/bin/python benchmarks/analytics.py                        # 10^7 rows, 60 queries, tau 0.95
    .venv/bin/python benchmarks/analytics.py --rows 1000000 --queries 20

Builds (or reuses, cached under the temp dir by its parameters) a generated store, draws queries
at random (intersection, approach, a time on the 5-minute grid with an hour before it), and runs
each one approximately (`jellybean.analytics.query.approximate`, the given tau) and exactly, in
alternating order so that both see the same machine. Prints the median times, the speedup (the
median of the per-query ratios exact / approximate), the coverage (the share of answers equal to
the exact one: the same class, or within delta with --delta) and the sample fractions.

`--sorted` also times the exact query on a copy of the store sorted by (intersection, approach, t),
where DuckDB's zone maps skip the row groups of other approaches and times: the store keeps its
rows in random order so that SYSTEM samples are random samples, and this shows what that costs the
exact query.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jellybean.analytics import features, generate, store  # noqa: E402
from jellybean.analytics.model import CongestionModel  # noqa: E402
from jellybean.analytics.query import Options, approximate, exact  # noqa: E402


def build(args) -> Path:
    cache = Path(tempfile.gettempdir()) / "jellybean-analytics-bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"rows{args.rows}-i{args.intersections}-d{args.days:g}-s{args.seed}.duckdb"
    if path.exists():
        try:
            info = store.info(path)
            print(f"reusing {path}: {info.rows} rows, {info.hz:.4g} Hz")
            return path
        except Exception as exc:  # noqa: BLE001 - a half-written cache is rebuilt
            print(f"rebuilding {path} ({exc})")
    started = time.perf_counter()
    cfg = generate.config(intersections=args.intersections, days=args.days, rows=args.rows, seed=args.seed)
    columns, hz = generate.generate(cfg)
    generated = time.perf_counter() - started
    con = store.create(path, hz, overwrite=True)
    store.insert(con, columns, shuffled=True)
    con.close()
    print(f"built {path}: {columns['t'].size} rows at {hz:.4g} Hz, generated in {generated:.1f} s, "
          f"written in {time.perf_counter() - started - generated:.1f} s")
    return path


def targets(con, count: int, seed: int) -> list[features.Where]:
    rng = np.random.default_rng(seed)
    found = store.approaches(con)
    out = []
    while len(out) < count:
        a = found[rng.integers(len(found))]
        first = np.ceil((a.t_min + 3600) / 300) * 300
        last = np.floor((a.t_max - 300) / 300) * 300
        out.append(features.Where(a.intersection, a.approach, float(first + 300 * rng.integers(0, (last - first) // 300))))
    return out


def sorted_copy(path: Path) -> Path:
    copy = path.with_name(path.stem + "-sorted.duckdb")
    if not copy.exists():
        import duckdb

        con = duckdb.connect(str(copy))
        con.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
        con.execute("CREATE TABLE observations AS SELECT * FROM src.observations ORDER BY intersection, approach, t")
        con.execute("CREATE TABLE store_info AS SELECT * FROM src.store_info")
        con.execute("CREATE TABLE approaches AS SELECT * FROM src.approaches")
        con.close()
    return copy


def hard(args) -> int:
    """Coverage where it is hardest: the queries whose exact P(congested) is nearest 0.5 (or, with
    --delta, nearest where the model is steepest: the same), each run with several seeds."""
    path = build(args)
    model = CongestionModel()
    con = store.connect(path)
    started = time.perf_counter()
    grid = features.grid(con)
    p = model.probability(grid["features"])
    picks = np.argsort(np.abs(p - 0.5))[:args.hard]
    print(f"{grid['t'].size} grid points (features in {time.perf_counter() - started:.1f} s); the {args.hard} "
          f"nearest the boundary have exact P(congested) {p[picks].min():.3f} .. {p[picks].max():.3f}")
    agree, reads, times, exact_times = [], [], [], []
    for k in picks:
        where = features.Where(str(grid["intersection"][k]), str(grid["approach"][k]), float(grid["t"][k]))
        truth = exact(con, model, where, Options(tau=args.tau, delta=args.delta), checked=True)
        exact_times.append(truth.seconds)
        for seed in range(args.repeats):
            a = approximate(con, model, where, Options(tau=args.tau, delta=args.delta, seed=seed), checked=True)
            ok = a.prediction == truth.prediction if args.delta is None else abs(a.prediction - truth.prediction) <= args.delta
            agree.append(ok)
            reads.append(a.read)
            times.append(a.seconds)
    con.close()
    runs = len(agree)
    bar = args.tau - 3 * np.sqrt(args.tau * (1 - args.tau) / runs)
    print(f"coverage {np.mean(agree):.4f} ({sum(agree)}/{runs} runs; τ={args.tau:g}, τ less 3 binomial SE {bar:.4f})")
    print(f"rows read median {np.median(reads):.2%} of the table (range {min(reads):.2%} .. {max(reads):.2%}); "
          f"approximate median {np.median(times) * 1000:.1f} ms, exact median {np.median(exact_times) * 1000:.1f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--intersections", type=int, default=2)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--tau", type=float, default=0.95)
    parser.add_argument("--delta", type=float, default=None, help="predict P(congested) within delta")
    parser.add_argument("--sorted", action="store_true", help="also time the exact query on a time-sorted copy")
    parser.add_argument("--hard", type=int, default=0, metavar="K",
                        help="instead: the K queries nearest the model's boundary, each with --repeats seeds")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if args.hard:
        return hard(args)

    path = build(args)
    model = CongestionModel()
    con = store.connect(path)
    rows = store.scalar(con, "SELECT count(*) FROM observations")
    where = targets(con, args.queries, args.seed + 1)
    for w in where[:2]:                                          # warm caches and ORT before timing
        exact(con, model, w, checked=True)
        approximate(con, model, w, Options(tau=args.tau, delta=args.delta), checked=True)
    results = []
    for k, w in enumerate(where):
        options = Options(tau=args.tau, delta=args.delta, seed=k)
        if k % 2:
            e = exact(con, model, w, options, checked=True)
            a = approximate(con, model, w, options, checked=True)
        else:
            a = approximate(con, model, w, options, checked=True)
            e = exact(con, model, w, options, checked=True)
        ok = a.prediction == e.prediction if args.delta is None else abs(a.prediction - e.prediction) <= args.delta
        results.append((w, e, a, ok))
    con.close()

    ex = np.array([e.seconds for _, e, _, _ in results])
    ap = np.array([a.seconds for _, _, a, _ in results])
    ratio = ex / ap
    covered = np.mean([ok for *_, ok in results])
    hour = np.array([a.fractions["hour"] for _, _, a, _ in results])
    recent = np.array([a.fractions["recent"] for _, _, a, _ in results])
    read = np.array([a.read for _, _, a, _ in results])
    rounds = np.array([a.rounds for _, _, a, _ in results])
    positives = sum(e.prediction >= 0.5 for _, e, _, _ in results)
    kind = f"class (congested in the next 5 min)" if args.delta is None else f"P(congested) within δ={args.delta:g}"
    print(f"\n{len(results)} queries on {rows} rows ({args.intersections} intersections × 4 approaches × "
          f"{args.days:g} days), τ={args.tau:g}, {kind}; {positives} exact answers congested")
    print(f"exact        median {np.median(ex) * 1000:8.1f} ms  (p10 {np.percentile(ex, 10) * 1000:.1f}, "
          f"p90 {np.percentile(ex, 90) * 1000:.1f})")
    print(f"approximate  median {np.median(ap) * 1000:8.1f} ms  (p10 {np.percentile(ap, 10) * 1000:.1f}, "
          f"p90 {np.percentile(ap, 90) * 1000:.1f})")
    print(f"speedup      median of per-query ratios {np.median(ratio):.2f}×  (ratio of medians "
          f"{np.median(ex) / np.median(ap):.2f}×; p10 {np.percentile(ratio, 10):.2f}×, min {ratio.min():.2f}×)")
    print(f"coverage     {covered:.4f} ({int(round(covered * len(results)))}/{len(results)} answers "
          f"{'the exact class' if args.delta is None else 'within δ of the exact'})")
    print(f"fractions    last-hour sample median {np.median(hour):.4%} (range {hour.min():.4%} .. {hour.max():.4%}); "
          f"last-15-min sample median {np.median(recent):.4%} (range {recent.min():.4%} .. {recent.max():.4%})")
    print(f"rows read    median {np.median(read):.4%} of the table over all rounds (range {read.min():.4%} .. "
          f"{read.max():.4%}); rounds median {statistics.median(rounds.tolist()):g} (max {rounds.max()}); "
          f"{int(np.sum((hour >= 1) & (recent >= 1)))} queries read both windows whole")
    if args.sorted:
        copy = sorted_copy(path)
        con = store.connect(copy)
        for w, *_ in results[:2]:
            exact(con, model, w, checked=True)
        sorted_times = [exact(con, model, w, checked=True).seconds for w, *_ in results]
        con.close()
        print(f"exact on a copy sorted by (intersection, approach, t): median {np.median(sorted_times) * 1000:.1f} ms "
              f"({np.median(ex) / np.median(sorted_times):.1f}× faster than on the random-order store; the "
              f"approximate query is {np.median(sorted_times) / np.median(ap):.2f}× of it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
