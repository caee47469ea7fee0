"""Approximate variants in the plan (issue 16): a variant that `approximates` an exact one is planned
like any other, and `plan` records what the best plan without approximation costs, which `explain`
shows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.errors import SpecError
from jellybean.planner.approximation import compare_exact, without_approximation
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aicity-approx"
runner = CliRunner()


def example_paths() -> dict[str, Path]:
    return {name: EXAMPLE / f"{name}.yaml" for name in ("workflow", "zoo", "infrastructure")}


def _plan(problem, inputs):
    return make_plan(problem, "optimal", time_limit=60, inputs=inputs.paths)


def test_the_example_plans_the_sampled_reid_and_records_what_exact_reid_would_cost():
    inputs = load_inputs(*example_paths().values())
    problem = build_problem(inputs)
    plan = compare_exact(problem, _plan(problem, inputs), lambda p: _plan(p, inputs))
    assert plan.variants["reid"] == "reid-w100-sampled"
    a = plan.approximation
    assert a is not None and a.variants == {"reid": "reid-w100-sampled"}
    assert a.exact_variants["reid"] == "reid-w100"
    # The exact plan is what planning without the sampled variant gives, and it costs more.
    exact = _plan(without_approximation(problem), inputs)
    assert a.exact_cost == pytest.approx(exact.cost.total, rel=1e-9)
    assert a.exact_cost > plan.cost.total
    # The sampled variant's re-ID load is the same items (crops); its workers are fewer or cheaper.
    reid_load = sum(w.load for w in plan.workers if w.operator == "reid")
    assert reid_load == pytest.approx(sum(w.load for w in exact.workers if w.operator == "reid"), rel=1e-6)


def test_a_plan_without_approximate_variants_has_no_approximation(tmp_path):
    inputs = load_inputs(*example_paths().values())
    problem = without_approximation(build_problem(inputs))
    plan = compare_exact(problem, _plan(problem, inputs), lambda p: pytest.fail("nothing to compare"))
    assert plan.approximation is None


def test_plan_and_explain_say_what_approximation_saves(tmp_path):
    out = tmp_path / "plan.yaml"
    paths = example_paths()
    result = runner.invoke(app, ["plan", "-w", str(paths["workflow"]), "-z", str(paths["zoo"]),
                                 "-i", str(paths["infrastructure"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["explain", str(out)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    a = yaml.safe_load(out.read_text())["approximation"]
    saved = a["exact_cost"] - yaml.safe_load(out.read_text())["cost"]["total"]
    assert "Approximation" in shown.output and "reid runs reid-w100-sampled" in shown.output
    assert f"approximation saves {saved:.4f} $/h" in shown.output


def test_approximates_must_name_an_exact_variant_of_the_operator(tmp_path):
    zoo = yaml.safe_load((EXAMPLE / "zoo.yaml").read_text())
    for op in zoo["operators"]:
        for v in op["variants"]:
            if v.get("model"):
                v["model"] = str((EXAMPLE / v["model"]).resolve())
            if v.get("approximates"):
                v["approximates"] = "reid-w999"
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    paths = example_paths()
    with pytest.raises(SpecError, match=r"approximates.*reid-w999.*name an exact variant.*reid-w100"):
        load_inputs(paths["workflow"], tmp_path / "zoo.yaml", paths["infrastructure"])
