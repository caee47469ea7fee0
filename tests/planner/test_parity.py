"""Redundancy in the plan (ParM): parity workers placed and priced as an operator of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rich.console import Console

from jellybean.agents.deployment import Deployment, build_assignments
from jellybean.errors import JellyBeanError, SpecError
from jellybean.planner.build import build_problem, check_references, load_inputs
from jellybean.planner.render import render_explain
from jellybean.planner.strategies import make_plan

try:
    from .brute_force import brute_force
    from .example_specs import aicity_specs, write_specs
except ImportError:  # run as a script
    from brute_force import brute_force
    from example_specs import aicity_specs, write_specs

REPO = Path(__file__).resolve().parents[2]
AICITY = REPO / "examples" / "aicity"


def _example(tmp_path: Path, *, k: int = 2, parity: dict[str, list[int]] | None = None,
             redundancy: dict | None = None, model: str | None = None) -> dict[str, Path]:
    """examples/aicity with `redundancy` on reid and parity models listed for some reid variants."""
    parity = {"reid-w100": [2]} if parity is None else parity
    wf, zoo, infra = aicity_specs()
    for op in wf["operators"]:
        if op["name"] == "reid":
            op["redundancy"] = redundancy if redundancy is not None else {"parity": k}
    for op in zoo["operators"]:
        for v in op["variants"]:
            v.pop("parity", None)         # the example zoo's own; the test lists its own below
            if op["name"] == "reid" and v["name"] in parity:
                v["parity"] = [{"k": n, "encoder": "concat", "model": model or f"{v['name']}_parity_k{n}.onnx"}
                               for n in parity[v["name"]]]
    return write_specs(tmp_path, wf, zoo, infra)


def _inputs(paths):
    inputs = load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
    check_references(inputs)
    return inputs


def test_parity_workers_take_one_in_k_of_the_items_on_workers_of_their_own(tmp_path):
    inputs = _inputs(_example(tmp_path))
    problem = build_problem(inputs)
    plan = make_plan(problem)
    assert plan.variants["reid"] == "reid-w100"          # the only variant with a parity model
    assert plan.variants["reid.parity"] == "reid-w100.parity2"
    reid = sum(w.load for w in plan.workers if w.operator == "reid")
    par = [w for w in plan.workers if w.operator == "reid.parity"]
    assert par and sum(w.load for w in par) == pytest.approx(reid / 2)
    # A worker runs one operator: no pool lends the same worker to the data and its parity.
    for pool in {w.pool for w in plan.workers}:
        used = sum(w.count for w in plan.workers if w.pool == pool)
        assert used <= next(p.count for p in problem.pools if p.name == pool)
    # The encoded queries are one crop each, 1/k of the crops; the parity outputs go to the tracker.
    rate = {e.name: e.rate for e in problem.edges}
    assert rate["detect->reid.parity"] == pytest.approx(rate["detect->reid"] / 2)
    assert rate["reid.parity->track"] == pytest.approx(rate["reid->track"] / 2)
    assert any(r.edge == "reid.parity->track" and r.items_per_s > 0 for r in plan.routes)
    # Redundancy costs what its workers and bytes cost, and the plan is still the optimum.
    plain = make_plan(build_problem(_inputs({n: AICITY / f"{n}.yaml" for n in ("workflow", "zoo", "infrastructure")})))
    assert plan.cost.total > plain.cost.total
    assert plan.cost.total == pytest.approx(brute_force(problem), rel=1e-6)


def test_a_parity_model_pairs_only_with_its_own_base_variant(tmp_path):
    problem = build_problem(_inputs(_example(tmp_path, parity={"reid-w050": [2], "reid-w100": [2, 4]})))
    plan = make_plan(problem)
    assert plan.variants["reid.parity"] == plan.variants["reid"] + ".parity2"
    # Forcing the other pairing finds no plan: the table bars it.
    assert problem.accuracy.of({**plan.variants, "reid.parity": "reid-w100.parity2" if
                                plan.variants["reid"] == "reid-w050" else "reid-w050.parity2"}) is None
    assert plan.cost.total == pytest.approx(brute_force(problem), rel=1e-6)


@pytest.mark.parametrize("redundancy, parity, words", [
    ({"parity": 4}, None, ["operators[1].redundancy.parity", "k = 4", "(they have k = 2)", "train_parity.py"]),
    ({"parity": 0}, None, ["redundancy.parity", "greater than or equal to 1"]),
    ({"parity": 1}, None, ["k = 1", "(they have k = 2)"]),
    ({"parity": 2, "spare": 1}, None, ["redundancy.spare"]),
    ({"parity": 2}, {}, ["no variant of 'reid'", "k = 2", "train_parity.py"]),
])
def test_redundancy_the_zoo_cannot_serve_is_a_clear_error(tmp_path, redundancy, parity, words):
    with pytest.raises(SpecError) as err:
        _inputs(_example(tmp_path, redundancy=redundancy, parity=parity))
    text = str(err.value)
    assert str(tmp_path / "workflow.yaml") in text or "workflow.yaml" in text
    for w in words:
        assert w in text, text


def test_a_backup_model_is_k_1_every_item_once_more_on_its_own_cheaper_workers(tmp_path):
    paths = _example(tmp_path, k=1, parity={"reid-w100": [1]})
    zoo = yaml.safe_load(paths["zoo"].read_text())
    reid = next(o for o in zoo["operators"] if o["name"] == "reid")
    w100 = next(v for v in reid["variants"] if v["name"] == "reid-w100")
    w050 = next(v for v in reid["variants"] if v["name"] == "reid-w050")
    w100["parity"][0]["profiles"] = w050["profiles"]        # a width-0.5 backup costs what reid-w050 does
    paths["zoo"].write_text(yaml.safe_dump(zoo, sort_keys=False))
    problem = build_problem(_inputs(paths))
    plan = make_plan(problem)
    assert plan.variants["reid"] == "reid-w100" and plan.variants["reid.parity"] == "reid-w100.parity1"
    rate = {e.name: e.rate for e in problem.edges}
    assert rate["detect->reid.parity"] == pytest.approx(rate["detect->reid"])
    assert rate["reid.parity->track"] == pytest.approx(rate["reid->track"])
    # The backup takes every item, on its own workers, at its own (cheaper) profile.
    load = {op: sum(w.load for w in plan.workers if w.operator == op) for op in ("reid", "reid.parity")}
    assert load["reid.parity"] == pytest.approx(load["reid"])
    assert plan.cost.total == pytest.approx(brute_force(problem), rel=1e-6)
    console = Console(width=400, record=True)
    render_explain(plan, console)
    out = console.export_text()
    assert "reid (reid-w100) is backed by its backup model reid-w100.parity1" in out and "every item" in out


def test_explain_shows_the_parity_workers_and_what_they_cost(tmp_path):
    plan = make_plan(build_problem(_inputs(_example(tmp_path))))
    console = Console(width=400, record=True)
    render_explain(plan, console)
    out = console.export_text()
    assert "Redundancy" in out and "reid (reid-w100) is protected by its parity model reid-w100.parity2" in out
    assert "k = 2" in out and "of the plan" in out


def test_the_assignments_run_the_parity_workers_and_tell_producers_and_consumers(tmp_path):
    # The base model stands in for the parity model file: assignments only name and checksum it.
    stand_in = (AICITY / "../../model_zoo/aicity/reid_w100.onnx").resolve()
    inputs = _inputs(_example(tmp_path, model=str(stand_in)))
    plan = make_plan(build_problem(inputs))
    sites = sorted({w.location for w in plan.workers})
    out = build_assignments(Deployment(plan=plan, inputs=inputs, zoo_dir=tmp_path), {s: [f"a-{s}"] for s in sites}, 1)
    parity_site = next(w.location for w in plan.workers if w.operator == "reid.parity")
    (task,) = [t for t in out[f"a-{parity_site}"].tasks if t.operator == "reid.parity"]
    assert task.runtime == "parity-embedder" and task.params == {"k": 2, "encoder": "concat"}
    assert task.model == str(stand_in) and task.sha256
    for a in out.values():
        assert a.parity["reid"].operator == "reid.parity" and a.parity["reid"].k == 2
        assert a.downstream["reid.parity"] == ["track"] and "reid.parity" not in a.downstream["detect"]


def test_simulating_redundancy_is_refused_with_a_clear_message(tmp_path):
    from jellybean.adapt.simulate import prepare

    with pytest.raises(JellyBeanError, match="reid: redundancy.*not supported yet.*Remove `redundancy` and `resend`"):
        prepare(_inputs(_example(tmp_path)))
    (tmp_path / "resend").mkdir()
    resend = _example(tmp_path / "resend")
    wf = yaml.safe_load(resend["workflow"].read_text())
    for op in wf["operators"]:
        op.pop("redundancy", None)
        if op["name"] == "reid":
            op["resend"] = {"after_ms": 60}
    resend["workflow"].write_text(yaml.safe_dump(wf))
    with pytest.raises(JellyBeanError, match=r"redundancy \(reid: resend\) is not supported yet"):
        prepare(_inputs(resend))
