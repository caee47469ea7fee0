"""Stage 5: show a plan to people (rich tables) and write it for machines (YAML, JSON)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jellybean.planner import parity
from jellybean.spec.base import load_model
from jellybean.tables import fit
from jellybean.spec.plan import Plan


def plan_to_dict(plan: Plan) -> dict:
    return plan.model_dump(mode="json", by_alias=True)


def write_plan(plan: Plan, path: Path) -> None:
    """Write `plan` to `path`, its input files named relative to the plan's own folder, so that
    `deploy` and `broker config --plan` find them from any working directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = plan.model_copy(update={"inputs": relative_inputs(plan.inputs, path.parent)})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(plan_to_dict(plan), sort_keys=False, width=120), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written plan behind


def relative_inputs(inputs: dict[str, str], folder: Path) -> dict[str, str]:
    """Input paths that exist from here, rewritten relative to `folder`; others as they were."""
    out = {}
    for key, value in inputs.items():
        where = Path(value)
        out[key] = os.path.relpath(where.resolve(), folder.resolve()) if where.exists() else value
    return out


def read_plan(path: Path) -> Plan:
    return load_model(Plan, path)


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2)


def _bar(fraction: float | None, width: int = 12) -> Text:
    if fraction is None:
        return Text("unlimited", style="dim")
    filled = min(width, round(fraction * width))
    style = "red" if fraction >= 0.999 else "yellow" if fraction >= 0.8 else "green"
    return Text("█" * filled + "░" * (width - filled), style=style) + Text(f" {fraction:5.0%}")


def _fmt_gap(gap: float | None) -> str:
    return "n/a" if gap is None else f"{gap:.2%}"


def headline(plan: Plan) -> Text:
    s = plan.solver
    status_style = {"OPTIMAL": "bold green", "FEASIBLE": "bold yellow"}.get(s.status, "bold cyan")
    text = Text()
    text.append(f"{plan.name}", style="bold")
    text.append(f"  strategy {plan.strategy}  ")
    text.append(s.status, style=status_style)
    text.append(f"  gap {_fmt_gap(s.gap)}  {s.seconds:.2f} s ({s.backend})\n")
    if s.status == "FEASIBLE" and plan.strategy == "optimal":
        text.append(f"not proven optimal: the solver stopped with a gap of {_fmt_gap(s.gap)}; a longer "
                    "--time-limit may close it\n", style="yellow")
    c = plan.cost
    text.append(f"cost {c.total:.4f} $/h", style="bold")
    text.append(f" = compute {c.compute:.4f} + network {c.network:.4f}\n")
    pr = plan.predicted
    if pr.accuracy is not None:
        target = f" (target {pr.accuracy_target:g})" if pr.accuracy_target is not None else ""
        text.append(f"accuracy {pr.accuracy:.4g}{target}   ")
    if pr.latency_ms is not None:
        bound = f" (bound {pr.latency_bound_ms:g} ms)" if pr.latency_bound_ms is not None else ""
        text.append(f"latency {pr.latency_ms:.1f} ms{bound}   ")
    text.append("variants " + ", ".join(f"{o}={v}" for o, v in plan.variants.items()))
    if plan.mix:
        shares = "; ".join(f"{op}: " + ", ".join(f"{var} {share:.1%}" for var, share in by_var.items())
                           for op, by_var in plan.mix.items())
        text.append(f"\nmixed variants (share of items): {shares}", style="bold")
    return text


def mixing_panel(plan: Plan) -> Panel | None:
    """Why the plan mixes variants, or why it does not although mixing was considered."""
    m = plan.mixing
    if m is None:
        return None
    lines = [Text(m.reason)] if m.reason else []
    if m.one_variant_cost is not None:
        one = ", ".join(f"{o}={v}" for o, v in m.one_variant_variants.items())
        acc = f", accuracy {m.one_variant_accuracy:.4g}" if m.one_variant_accuracy is not None else ""
        lines.append(Text(f"one-variant plan: {m.one_variant_cost:.4f} $/h ({one}{acc}); "
                          f"this plan: {plan.cost.total:.4f} $/h"))
    for path in m.paths:
        acc = f" (accuracy {path.accuracy:.4g})" if path.accuracy is not None else ""
        lines.append(Text(f"• {path.share:.2%} of items on " + ", ".join(f"{o}={v}" for o, v in path.variants.items())
                          + acc))
    title = "Mixed variants" if m.chosen else "Mixed variants considered, not chosen"
    return Panel(Group(*lines), title=title, expand=False)


def scale_panel(plan: Plan) -> Panel | None:
    """Which variants pass on less than they take, and what the plan sized for it."""
    lines = []
    edges = {tuple(r.edge.split("->", 1)) for r in plan.routes}
    for op, scale in plan.output_scale.items():
        after, todo = [], [op]
        while todo:
            node = todo.pop(0)
            for src, dst in sorted(edges):
                if src == node and dst not in after:
                    after.append(dst)
                    todo.append(dst)
        lines.append(Text(
            f"• {op} runs {plan.variants.get(op, '?')}, which passes on {scale:.4g} of its items' work (a stride "
            f"of {1 / scale:.4g} frames): the operators after it ({', '.join(after) or 'none'}) and "
            "the links between them are planned for that share of the items."))
    return Panel(Group(*lines), title="Strided variants", expand=False) if lines else None


def approximation_panel(plan: Plan) -> Panel | None:
    """What the plan's approximate variants save against the best plan without them."""
    a = plan.approximation
    if a is None:
        return None
    runs = ", ".join(f"{op} runs {v}" for op, v in a.variants.items())
    lines = [Text(f"• {runs}: approximate (a sample of the work, stopped once the result is settled).")]
    if a.exact_cost is None:
        lines.append(Text(f"• {a.reason}"))
    else:
        saved = a.exact_cost - plan.cost.total
        share = saved / a.exact_cost if a.exact_cost > 0 else 0.0
        exact = ", ".join(f"{o}={v}" for o, v in a.exact_variants.items())
        acc = f", accuracy {a.exact_accuracy:.4g}" if a.exact_accuracy is not None else ""
        lines.append(Text(f"• without approximation: {a.exact_cost:.4f} $/h ({exact}{acc}); this plan: "
                          f"{plan.cost.total:.4f} $/h; approximation saves {saved:.4f} $/h ({share:.1%})"))
        if a.reason:
            lines.append(Text(f"• {a.reason}"))
    return Panel(Group(*lines), title="Approximation", expand=False)


def redundancy_panel(plan: Plan) -> Panel | None:
    """Which operators parity workers protect, on what, at what share of the plan's $/h."""
    lines = []
    for op, variant in plan.variants.items():
        base = parity.base_of(op)
        if base is None:
            continue
        groups = [w for w in plan.workers if w.operator == op]
        price = sum(w.count * w.price_per_hour for w in groups)
        where = ", ".join(f"{w.count} {w.hardware} at {w.location}" for w in groups) or "no worker"
        share = price / plan.cost.total if plan.cost.total > 0 else 0.0
        k = parity.k_of(variant)
        paid = f"on workers of their own ({where}), {price:.4f} $/h, {share:.1%} of the plan"
        if k == 1:
            lines.append(Text(
                f"• {base} ({plan.variants.get(base, '?')}) is backed by its backup model {variant} (ParM's "
                f"cheap-backup baseline, k = 1): every item also goes to the backup, {paid}. When an output is "
                f"missing, the decoder beside {base}'s consumers takes the backup's in its place."))
            continue
        lines.append(Text(
            f"• {base} ({plan.variants.get(base, '?')}) is protected by its parity model {variant} (ParM, k = "
            f"{k}): one parity query per {k} of its items, {paid}. The operator may use only variants "
            "with a parity model for this k; when one of a group's outputs is missing, the decoder beside "
            f"{base}'s consumers rebuilds it from the others and the parity output."))
    return Panel(Group(*lines), title="Redundancy", expand=False) if lines else None


def tier_table(plan: Plan) -> Table:
    table = Table(title="Workers per tier", show_lines=False, title_justify="left")
    for col, just in (("tier", "left"), ("location", "left"), ("hardware", "left"), ("operator", "left"),
                      ("variant", "left"), ("workers", "right"), ("load items/s", "right"), ("use", "left"),
                      ("$/h", "right")):
        table.add_column(col, justify=just)
    ordered = sorted(plan.workers, key=lambda w: (plan.tiers.get(w.location, 0), w.location, w.operator))
    per_tier: dict[str, float] = defaultdict(float)
    for w in ordered:
        per_tier[w.tier] += w.cost_per_hour
        table.add_row(w.tier, w.location, w.hardware, w.operator, w.variant, str(w.count),
                      f"{w.load:.1f}/{w.capacity:.1f}", _bar(w.utilisation), f"{w.cost_per_hour:.3f}")
    for tier, cost in per_tier.items():
        table.add_row(Text(tier, style="bold"), "", "", "", "", "", "", Text("tier total", style="dim"),
                      Text(f"{cost:.3f}", style="bold"), end_section=False)
    return table


def link_table(plan: Plan) -> Table:
    table = Table(title="Links", title_justify="left")
    for col, just in (("link", "left"), ("Mbps", "right"), ("bandwidth", "right"), ("use", "left"),
                      ("latency ms", "right"), ("$/GB", "right"), ("$/h", "right")):
        table.add_column(col, justify=just)
    for l in sorted(plan.links, key=lambda l: -l.kb_per_s):
        table.add_row(f"{l.from_} → {l.to}", f"{l.mbps:.2f}",
                      f"{l.bandwidth_mbps:.0f}" if l.bandwidth_mbps else "∞", _bar(l.utilisation),
                      f"{l.latency_ms:g}", f"{l.cost_per_gb:g}", f"{l.cost_per_hour:.4f}")
    return table


def render_summary(plan: Plan, console: Console) -> None:
    console.print(Panel(headline(plan), expand=False))
    console.print(fit(tier_table(plan)))


def render_explain(plan: Plan, console: Console) -> None:
    console.print(Panel(headline(plan), expand=False))
    console.print(fit(tier_table(plan)))
    if plan.links:
        console.print(fit(link_table(plan)))
    flows = Table(title="Traffic per workflow edge", title_justify="left")
    for col in ("edge", "stays local items/s", "link crossings items/s", "KB/s over links"):
        flows.add_column(col, justify="left" if col == "edge" else "right")
    per_edge: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in plan.routes:
        row = per_edge[r.edge]
        if r.from_ == r.to:
            row[0] += r.items_per_s
        else:
            row[1] += r.items_per_s
            row[2] += r.kb_per_s
    for edge, (local, crossing, kb) in per_edge.items():
        flows.add_row(edge, f"{local:.1f}", f"{crossing:.1f}", f"{kb:.1f}")
    if per_edge:
        console.print(fit(flows))
    for panel in (mixing_panel(plan), scale_panel(plan), approximation_panel(plan), redundancy_panel(plan)):
        if panel is not None:
            console.print(panel)
    binding = plan.binding or ("none: every constraint has slack",)
    console.print(Panel(Group(*(Text(f"• {b}") for b in binding)), title="Binding constraints", expand=False))
