"""`jellybean plan --report DIR [--compare S]` and `jellybean explain PLAN --report DIR [--compare S]`
through the real app, on the 40-camera AI City city (configs/aicity, about a second to plan)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jellybean.cli.main import app

REPO = Path(__file__).resolve().parents[2]
CITY = REPO / "configs" / "aicity"
# --no-mix: one variant per operator plans the city in a second; mixing its detectors takes ~5 s.
INPUTS = ("-w", str(CITY / "workflow.yaml"), "-z", str(CITY / "zoo.yaml"), "-i", str(CITY / "infrastructure.yaml"),
          "--no-mix")

_spec = importlib.util.spec_from_file_location("report_page", REPO / "tests" / "planner" / "report_page.py")
report_page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_page)

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def _cost(path: Path) -> float:
    return yaml.safe_load(path.read_text())["cost"]["total"]


def _check_compare(report: Path, plan_yaml: Path, greedy_yaml: Path) -> None:
    page = report_page.read_page(report)
    total = {r[""][0]: r for r in page.rows("compare")}["total $/h"]
    optimal, greedy = _cost(plan_yaml), _cost(greedy_yaml)
    assert greedy - optimal > 0.1
    assert (total["optimal"][1], total["greedy"][1]) == (optimal, greedy)
    assert page.values["cost-difference"] == pytest.approx(greedy - optimal, abs=1e-12)
    shown = "".join(page.text)
    for value in (optimal, greedy, greedy - optimal):
        assert f"{value:,.6f}" in shown


def test_plan_report_with_greedy_beside_it(tmp_path):
    out, report = tmp_path / "plan.yaml", tmp_path / "report"
    result = run("plan", *INPUTS, "-o", str(out), "--report", str(report), "--compare", "greedy")
    assert result.exit_code == 0, result.output
    assert f"report written to {report / 'index.html'}" in result.output
    for name in ("index.html", "infrastructure.png", "tier_costs.png", "greedy-plan.yaml"):
        assert (report / name).stat().st_size > 0
    # The greedy plan beside it is the one `plan --strategy greedy` makes.
    alone = tmp_path / "greedy.yaml"
    assert run("plan", *INPUTS, "--strategy", "greedy", "-o", str(alone)).exit_code == 0
    assert _cost(report / "greedy-plan.yaml") == _cost(alone)
    _check_compare(report, out, alone)
    sites = {r["site"][0] for r in report_page.read_page(report).rows("sites")}
    assert sites == set(yaml.safe_load(out.read_text())["tiers"])


def test_plan_json_with_a_report_keeps_stdout_json(tmp_path):
    import json

    result = run("plan", *INPUTS, "--json", "--report", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["cost"]["total"] > 0
    assert (tmp_path / "r" / "index.html").is_file()


def test_explain_report_compares_through_the_plans_own_inputs_from_elsewhere(tmp_path, monkeypatch):
    plans = tmp_path / "plans"
    assert run("plan", *INPUTS, "-o", str(plans / "city.yaml")).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # the plan names its inputs relative to itself
    result = run("explain", "../plans/city.yaml", "--report", "report", "--compare", "greedy")
    assert result.exit_code == 0, result.output
    assert "Binding constraints" in result.output and "report written to report/index.html" in result.output
    _check_compare(elsewhere / "report", plans / "city.yaml", elsewhere / "report" / "greedy-plan.yaml")
    # The same plan gives the same page, whether `plan` or `explain` wrote it (the greedy part aside).
    plain = run("explain", "../plans/city.yaml", "--report", "plain")
    assert plain.exit_code == 0, plain.output
    page = report_page.read_page(elsewhere / "plain")
    assert "compare" not in page.tables
    assert page.tables["links"] == report_page.read_page(elsewhere / "report").tables["links"]


def test_explain_compare_names_a_moved_input(tmp_path):
    plan = tmp_path / "city.yaml"
    assert run("plan", *INPUTS, "-o", str(plan)).exit_code == 0
    data = yaml.safe_load(plan.read_text())
    data["inputs"]["zoo"] = "gone/zoo.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run("explain", str(plan), "--report", str(tmp_path / "r"), "--compare", "greedy")
    assert result.exit_code == 2
    assert "inputs.zoo" in result.output and "--zoo" in result.output
    # --zoo finds it.
    ok = run("explain", str(plan), "--report", str(tmp_path / "r"), "--compare", "greedy",
             "--zoo", str(CITY / "zoo.yaml"))
    assert ok.exit_code == 0, ok.output


def test_a_baseline_without_a_plan_is_said_in_the_report(tmp_path):
    result = run("plan", *INPUTS, "--report", str(tmp_path / "r"), "--compare", "all-edge")
    assert result.exit_code == 0, result.output
    assert "--compare all-edge: no plan" in result.output
    page = report_page.read_page(tmp_path / "r")
    assert "compare" not in page.tables
    assert "--compare all-edge: no plan: strategy all-edge: no feasible plan" in "".join(page.text)


def test_compare_usage_errors(tmp_path):
    bad = run("plan", *INPUTS, "--report", str(tmp_path / "r"), "--compare", "cheapest")
    assert bad.exit_code == 2
    assert "'cheapest' is not one of" in bad.output
    for choice in ("'optimal'", "'greedy'", "'all-cloud'", "'all-edge'"):
        assert choice in bad.output
    assert not (tmp_path / "r").exists()
    plan = tmp_path / "city.yaml"
    assert run("plan", *INPUTS, "-o", str(plan)).exit_code == 0
    bad = run("explain", str(plan), "--report", str(tmp_path / "r"), "--compare", "cheapest")
    assert bad.exit_code == 2 and "'cheapest' is not one of" in bad.output and "'all-edge'" in bad.output
    alone = run("explain", str(plan), "--compare", "greedy")
    assert alone.exit_code == 2 and "--report" in alone.output
