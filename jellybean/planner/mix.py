"""Mixed variants (Loki's path formulation): the variant combinations a mixed plan shares items over.

A path is one variant per operator; a mixed plan sends a share c[p] of the items along each path,
so its accuracy is Σ c[p]·acc[p], linear in the shares. The paths are enumerated up front, which
is only sane for small zoos: past ``MAX_PATHS`` combinations the mixed model is refused.
"""

from __future__ import annotations

import itertools
import math

from jellybean.errors import NotSupportedError
from jellybean.planner.problem import Problem

MAX_PATHS = 512
# A mix replaces the one-variant plan only when cheaper by more than this: equal plans stay simple.
RELATIVE_TOLERANCE = 1e-6
ABSOLUTE_TOLERANCE = 0.005  # $/h, half a cent

Path = tuple[str, ...]  # a variant per operator, in the problem's operator order


def mix_cutoff(one_variant_cost: float) -> float:
    """A mixed plan must cost less than this to be chosen over the one-variant plan."""
    return one_variant_cost - RELATIVE_TOLERANCE * abs(one_variant_cost) - ABSOLUTE_TOLERANCE


def variant_paths(problem: Problem, allowed: list[list[str]] | None = None,
                  limit: int = MAX_PATHS) -> list[tuple[Path, float]]:
    """(path, accuracy) for every combination whose accuracy is defined; refused past ``limit``."""
    if allowed is None:
        allowed = [list(op.variants) for op in problem.operators]
    total = math.prod(len(a) for a in allowed)
    if total > limit:
        raise NotSupportedError(f"not supported: {total} variant combinations; plan without --mix or trim the zoo")
    names = [op.name for op in problem.operators]
    out = []
    for pick in itertools.product(*allowed):
        value = problem.accuracy.of(dict(zip(names, pick)))
        if value is not None:  # a table lacks it: never run, as in the one-variant model
            out.append((tuple(pick), value))
    return out


def operator_shares(operators: list[str], paths: dict[Path, float]) -> dict[str, dict[str, float]]:
    """operator -> {variant: share of its items}, for the operators whose paths run several variants."""
    out: dict[str, dict[str, float]] = {}
    for j, op in enumerate(operators):
        shares: dict[str, float] = {}
        for path, c in paths.items():
            shares[path[j]] = shares.get(path[j], 0.0) + c
        if len(shares) > 1:
            out[op] = dict(sorted(shares.items(), key=lambda kv: -kv[1]))
    return out


def reason(problem: Problem, paths: dict[Path, float], cost: float, one_variant_cost: float | None,
           one_variant_variants: dict[str, str]) -> str:
    """Why a mix was (or was not) chosen, in words, with the figures that decide it."""
    names = [op.name for op in problem.operators]
    acc = problem.accuracy
    if not paths:
        if one_variant_cost is None:
            return ""
        return ("no mix of variants is cheaper than the one-variant plan by more than "
                f"{ABSOLUTE_TOLERANCE * 100:g} cent/h (plus {RELATIVE_TOLERANCE:g} relative); it stays")
    mixing = [j for j in range(len(names)) if len({p[j] for p in paths}) > 1]

    def label(path: Path) -> str:
        return ", ".join(f"{names[j]}={path[j]}" for j in mixing)

    if one_variant_cost is None:
        saving = "where no one-variant plan exists"
    else:
        one = ", ".join(f"{o}={v}" for o, v in one_variant_variants.items())
        saving = (f"for {one_variant_cost - cost:.4f} $/h less than the one-variant plan "
                  f"({one}: {one_variant_cost:.4f} $/h, the mix {cost:.4f} $/h)")
    values = {p: acc.of(dict(zip(names, p))) for p in paths}
    below = any((values[p] or 0.0) < acc.target for p in paths) if acc.target is not None and acc.defined else False
    if below:  # a one-variant plan could not run the paths below the target at all
        ranked = sorted(paths, key=lambda p: values[p] or 0.0)
        low, high = ranked[0], ranked[-1]
        above = sum(c for p, c in paths.items() if (values[p] or 0.0) >= acc.target)
        return (f"the accuracy target {acc.target:g} lies between {label(low)} ({values[low]:.4g}) and "
                f"{label(high)} ({values[high]:.4g}): {above:.1%} of the items on paths at or above it "
                f"meet it {saving}")
    split = "; ".join(f"{c:.1%} on {label(p)}" for p, c in sorted(paths.items(), key=lambda kv: -kv[1]))
    return f"splitting the items ({split}) fits the workers at hand {saving}"
