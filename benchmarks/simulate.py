"""The adapt policies at city scale, simulated (`jellybean simulate`): examples/city's 1000 cameras.

1. Load traces (examples/traces), the three policies side by side: the diurnal shape stretched to a
   day (86 400 s), the bursty `cameras` trace read as shares of its cameras, stretched to a day,
   and the step burst (0.6x -> 1.8x -> 0.6x) over 3 hours. SLO violations, mean accuracy, $/h,
   $ per 1000 frames on time, and loki / hardware ratios.
   Then diurnal and bursty again on fixed hardware with every cloud worker owned: Loki's setting,
   one cluster for both policies (the cost is what each allocation uses of it).
2. Effective capacity on fixed hardware (no elastic workers beyond the plan's): the highest
   constant multiplier of the planned load served with <= 1 % violations (after a 300 s warm-up),
   by bisection, for hardware and loki, and their ratio; beside it the zoo's variant spread: the
   highest multiplier the cheapest path at the accuracy floor can serve on that hardware over the
   one the most accurate path can (Loki reports 2.7x on its workloads).

The model is deterministic (no seeds): one run per figure. Run: .venv/bin/python benchmarks/simulate.py
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from jellybean.adapt.model import solve
from jellybean.adapt.runtime import AdaptOptions
from jellybean.adapt.simulate import SimSettings, prepare, simulate
from jellybean.planner.build import load_inputs
from jellybean.replay.trace import LoadTrace, read_trace

ROOT = Path(__file__).resolve().parents[1]
CITY = ROOT / "examples" / "city"
TRACES = ROOT / "examples" / "traces"
POLICIES = ("static", "hardware", "loki")
WARMUP_S, FLAT_S = 300.0, 900.0


def flat(m: float) -> LoadTrace:
    return LoadTrace("flat", "multiplier", (0.0,), (m,))


def table(title: str, runs: dict, seconds: float) -> None:
    print(f"\n{title} (wall {seconds:.1f} s for the three)")
    print(f"{'policy':<9} {'violations':>11} {'dropped':>9} {'accuracy':>9} {'$/h':>8} {'$/1000 fr':>10} "
          f"{'latency':>8} {'decisions':>10} {'solved':>7} {'solve p50':>10} {'wall':>7}")
    for name, r in runs.items():
        t = r.totals
        print(f"{name:<9} {100 * t['violations']:>10.3f}% {100 * t['frames_dropped'] / t['frames_offered']:>8.3f}% "
              f"{t['mean_accuracy']:>9.4f} {t['mean_cost_per_hour']:>8.2f} {t['cost_per_1000_frames_on_time']:>10.5f} "
              f"{t['mean_latency_ms']:>6.0f}ms {t['decisions']:>10} {t['solves']:>7} "
              f"{1000 * (t['decision_seconds_median'] or 0):>8.1f}ms {t['wall_s']:>6.1f}s")
    hw, lk = runs["hardware"].totals, runs["loki"].totals
    vr = lk["violations"] / hw["violations"] if hw["violations"] > 0 else float("nan")
    print(f"loki / hardware: violations {vr:.3f} (target <= 0.2), $/h {lk['mean_cost_per_hour'] / hw['mean_cost_per_hour']:.3f}, "
          f"$ per 1000 frames on time {lk['cost_per_1000_frames_on_time'] / hw['cost_per_1000_frames_on_time']:.3f}, "
          f"accuracy {lk['mean_accuracy'] - hw['mean_accuracy']:+.4f}")


def fixed_fleet(scenario):
    """The fixed fleet: the cloud workers the policy itself runs for the planned load. (The planner
    fills workers to 100 % and the policy plans at 90 %, AdaptOptions.utilisation, so with exactly
    the plan's cloud workers even the planned load finds no allocation: `deploy --adapt
    --fixed-hardware` would refuse this plan the same way.) Note: with elastic=False the policy's
    Fleet stops cloud workers it does not need and cannot start them again, so under a trace
    that first falls the fleet shrinks for good (jellybean.adapt.policy.Fleet.want)."""
    rp, u = scenario.rp, AdaptOptions().utilisation
    base = solve(rp, rp.base_rate, "cost", {s.name: s.count for s in rp.slots}, utilisation=u)
    need = {s.name: sum(n for k, n in base.workers.items() if k[0] == s.name) for s in rp.slots}
    return dataclasses.replace(scenario, running={s.name: need[s.name] if s.elastic else scenario.running.get(s.name, 0)
                                                  for s in rp.slots})


def compare(scenario, trace: LoadTrace, settings: SimSettings, title: str, elastic: bool = True) -> dict:
    started = time.perf_counter()
    runs = {p: simulate(scenario, trace, AdaptOptions(policy=p, elastic=elastic), settings) for p in POLICIES}
    table(title, runs, time.perf_counter() - started)
    return runs


def violations_after_warmup(scenario, policy: str, m: float, settings: SimSettings) -> float:
    r = simulate(scenario, flat(m), AdaptOptions(policy=policy, elastic=False),
                 dataclasses.replace(settings, duration_s=FLAT_S))
    keep = [k for k, t in enumerate(r.t) if WARMUP_S <= t < FLAT_S]
    offered = sum(r.offered[k] for k in keep)
    return sum(r.late[k] + r.dropped[k] for k in keep) / offered if offered else 0.0


def capacity(scenario, policy: str, settings: SimSettings, hi: float = 6.0, rounds: int = 12) -> float:
    lo = 0.05
    if violations_after_warmup(scenario, policy, lo, settings) > 0.01:
        return 0.0
    for _ in range(rounds):
        mid = (lo + hi) / 2
        if violations_after_warmup(scenario, policy, mid, settings) <= 0.01:
            lo = mid
        else:
            hi = mid
    return lo


def path_capacity(scenario, path: tuple[str, ...]) -> float:
    """Highest multiplier of the planned load this one path serves on the plan's fixed hardware
    (every worker at its full profiled capacity)."""
    rp = scenario.rp
    counts = {s.name: (scenario.running.get(s.name, 0) if s.elastic else s.count) for s in rp.slots}
    fixed = dict(zip(rp.operators, path))

    def serves(m: float) -> bool:
        a = solve(rp, {op: r * m for op, r in rp.base_rate.items()}, "accuracy", counts, variants=fixed,
                  utilisation=1.0)
        return a is not None and a.served >= 1 - 1e-6

    lo, hi = 0.0, 8.0
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if serves(mid) else (lo, mid)
    return lo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=None, help="scale the city's 1000 cameras")
    parser.add_argument("--no-reserve-downstream", action="store_true",
                        help="drop only on the operator's own finish (the agents' rule before they kept time for what follows)")
    args = parser.parse_args()
    started = time.perf_counter()
    inputs = load_inputs(CITY / "workflow.yaml", CITY / "zoo.yaml", CITY / "infrastructure.yaml")
    scenario = prepare(inputs, cameras=args.cameras)
    rp = scenario.rp
    print(f"examples/city: {scenario.cameras} cameras, plan {scenario.plan_cost:.2f} $/h, slots "
          + ", ".join(f"{s.name} x{s.count}{' (elastic)' if s.elastic else ''}" for s in rp.slots)
          + f"; planned in {time.perf_counter() - started:.1f} s")
    base = SimSettings(reserve_downstream=not args.no_reserve_downstream)
    diurnal, bursty, step = (read_trace(TRACES / f"{n}.csv") for n in ("diurnal", "bursty", "step"))
    compare(scenario, diurnal, dataclasses.replace(base, stretch=1800), "diurnal, a day (stretch 1800)")
    compare(scenario, bursty, dataclasses.replace(base, stretch=4800, relative_cameras=True),
            "bursty cameras (shares of 4), a day (stretch 4800)")
    compare(scenario, step, dataclasses.replace(base, stretch=360), "step 0.6x -> 1.8x -> 0.6x, 3 h (stretch 360)")
    fixed = fixed_fleet(scenario)
    compare(fixed, step, dataclasses.replace(base, stretch=360), "the same step on fixed hardware ("
            + ", ".join(f"{n} {s}" for s, n in fixed.running.items()) + ")", elastic=False)

    # Loki's setting: one fixed cluster for both policies. The cost is still what each allocation
    # uses (DESIGN.md: a used worker is paid whole), so serving the peak costs loki more here too.
    owned = prepare(inputs, cameras=args.cameras, elastic_tiers=frozenset())
    compare(owned, diurnal, dataclasses.replace(base, stretch=1800),
            "diurnal on fixed hardware, every cloud worker owned", elastic=False)
    compare(owned, bursty, dataclasses.replace(base, stretch=4800, relative_cameras=True),
            "bursty on fixed hardware, every cloud worker owned", elastic=False)

    for label, fleet in (("the policy's cloud workers for the planned load", fixed),
                         ("every cloud worker owned (no elastic tier)", owned)):
        started = time.perf_counter()
        caps = {p: capacity(fleet, p, base) for p in ("hardware", "loki")}
        print(f"\neffective capacity on fixed hardware, {label} ("
              + ", ".join(f"{fleet.running.get(s.name, 0) if s.elastic else s.count} {s.name}" for s in fleet.rp.slots)
              + f"): <= 1 % violations at a constant load, {FLAT_S - WARMUP_S:.0f} s after a {WARMUP_S:.0f} s warm-up "
              f"({time.perf_counter() - started:.1f} s):")
        for p, c in caps.items():
            print(f"  {p:<9} {c:.3f}x the planned load")
        print(f"  loki / hardware: {caps['loki'] / caps['hardware']:.2f}x (target >= 1.5x; Loki reports 2.7x)")
        floor = rp.floor if rp.floor is not None else 0.0
        best = max(rp.paths, key=lambda p: rp.accuracy[p])
        at_floor = {p: path_capacity(fleet, p) for p in rp.paths if rp.accuracy[p] >= floor - 1e-12}
        cheapest = max(at_floor, key=at_floor.get)
        spread = at_floor[cheapest] / at_floor[best] if at_floor[best] > 0 else float("inf")
        print(f"  variant spread at the floor {floor:g}: the most accurate path {'/'.join(best)} (accuracy "
              f"{rp.accuracy[best]:.3f}) serves {at_floor[best]:.3f}x, the one that serves most at the floor, "
              f"{'/'.join(cheapest)} (accuracy {rp.accuracy[cheapest]:.3f}), {at_floor[cheapest]:.3f}x: spread "
              f"{spread:.2f}x, {spread / 2.7:.0%} of Loki's 2.7x")


if __name__ == "__main__":
    main()
