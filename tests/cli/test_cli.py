"""The real `jellybean` app: exit codes, one-line errors, the plan and explain round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from conftest import VQA_INPUTS
from jellybean.cli.main import app
from jellybean.errors import JellyBeanError

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_validate_good_files_together(specs):
    p = specs.write()
    result = run("validate", str(p["workflow"]), str(p["zoo"]), str(p["infrastructure"]), str(p["hardware"]))
    assert result.exit_code == 0, result.output
    assert result.output.count("ok") == 4


def test_validate_bad_file_exits_2_with_field_and_hint(specs):
    specs.workflow["operators"][0]["inptus"] = ["camera"]
    p = specs.write()
    result = run("validate", str(p["workflow"]))
    assert result.exit_code == 2
    assert f"{p['workflow']}: operators[0].inptus: unknown key 'inptus'; did you mean 'inputs'?" in result.output
    assert "Traceback" not in result.output


def test_validate_cross_file_reference(specs):
    specs.infra["sites"][0]["hardware"] = {"cam-bx": 1}
    p = specs.write()
    result = run("validate", str(p["workflow"]), str(p["zoo"]), str(p["infrastructure"]))
    assert result.exit_code == 2
    assert "sites[0].hardware.cam-bx: unknown hardware 'cam-bx'; did you mean 'cam-box'?" in result.output
    # The file with the bad reference is not called ok before its error; the others are.
    assert f"ok  {p['infrastructure']}" not in result.output and f"ok  {p['workflow']}" in result.output
    as_json = run("validate", str(p["workflow"]), str(p["zoo"]), str(p["infrastructure"]), "--json")
    assert as_json.exit_code == 2
    doc = json.loads(as_json.output)
    assert {f["path"]: f["ok"] for f in doc["files"]} == {str(p["workflow"]): True, str(p["zoo"]): True,
                                                         str(p["infrastructure"]): False}
    assert any("unknown hardware 'cam-bx'" in problem for problem in doc["problems"])


def test_validate_unknown_kind(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("kind: workflw\nname: x\n")
    result = run("validate", str(f))
    assert result.exit_code == 2
    assert "kind: unknown kind 'workflw'; did you mean 'workflow'?" in result.output


def test_plan_writes_yaml_and_explain_reads_it(specs, tmp_path):
    p = specs.write()
    out = tmp_path / "plan.yaml"
    result = run("plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "OPTIMAL" in result.output and "0.1400 $/h" in result.output
    saved = yaml.safe_load(out.read_text())
    assert saved["kind"] == "plan" and saved["variants"] == {"detect": "small", "track": "sort"}
    assert saved["cost"]["total"] == sum(w["count"] * w["price_per_hour"] for w in saved["workers"]) + saved["cost"]["network"]
    explained = run("explain", str(out))
    assert explained.exit_code == 0, explained.output
    for part in ("Workers per tier", "cam-box", "Binding constraints", "detect->track"):
        assert part in explained.output
    # --json: the plan as `plan --json` prints it.
    as_json = json.loads(run("explain", str(out), "--json").output)
    fresh = json.loads(run("plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]),
                           "--json").output)
    assert as_json["variants"] == fresh["variants"] == saved["variants"]
    assert as_json["cost"]["total"] == saved["cost"]["total"] and set(as_json) == set(fresh)


def test_plan_json_and_strategies(specs):
    p = specs.write()
    base = ["plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]), "--json"]
    optimal = json.loads(run(*base).output)
    greedy = json.loads(run(*base, "--strategy", "greedy").output)
    cloud = json.loads(run(*base, "--strategy", "all-cloud").output)
    assert optimal["solver"]["status"] == "OPTIMAL" and greedy["solver"]["status"] == "HEURISTIC"
    assert optimal["cost"]["total"] <= min(greedy["cost"]["total"], cloud["cost"]["total"]) + 1e-9
    assert {w["tier"] for w in cloud["workers"]} == {"cloud"}


def test_infeasible_plan_exits_1_naming_what_to_relax(specs):
    specs.workflow["slo"]["accuracy"] = 0.95
    p = specs.write()
    result = run("plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]))
    assert result.exit_code == 1
    assert "lower slo.accuracy" in result.output and "Traceback" not in result.output


def test_usage_errors(specs):
    p = specs.write()
    assert "missing -z/--zoo" in run("plan", "-w", str(p["workflow"]), "-i", str(p["infrastructure"])).output
    bad = run("plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]), "--strategy", "cheap")
    assert bad.exit_code == 2 and "'cheap' is not one of" in bad.output and "'all-cloud'" in bad.output


def test_debug_lets_the_exception_through(specs):
    specs.workflow["slo"]["accuracy"] = 0.95
    p = specs.write()
    result = run("--debug", "plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]))
    assert isinstance(result.exception, JellyBeanError)


def test_prototype_inputs_json_meets_the_bar():
    result = run("plan", "--jellybean-inputs", str(VQA_INPUTS), "--prototype-json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) >= {"compute_cost", "communication_cost", "total_cost", "end_to_end_accuracy",
                        "model_assignment", "worker_assignment", "solver"}
    assert out["solver"]["status"] == "OPTIMAL"
    assert out["total_cost"] <= 7.4851
    assert out["total_cost"] < 7.5087  # the prototype's own optimizer
    assert out["end_to_end_accuracy"] >= 56.0


def test_console_script_prints_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: workflow\nname: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "jellybean", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid YAML" in proc.stderr and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_json_stays_clean_with_a_chatty_backend(specs):
    # HiGHS prints a banner on the process's stdout; --json output must still parse.
    p = specs.write()
    proc = subprocess.run([sys.executable, "-m", "jellybean", "plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]),
                           "-i", str(p["infrastructure"]), "--backend", "HIGHS", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["solver"]["backend"] == "HIGHS"


def test_version_completion_and_choices():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"jellybean {version('jellybean')}"
    helped = run("--help").output
    assert "--install-completion" in helped and "--version" in helped
    # Choices are shown as choices, and the solver's name is taken in any case.
    helped = runner.invoke(app, ["plan", "--help"], env={"COLUMNS": "220"}).output
    assert "optimal|greedy|all-cloud|all-edge" in helped and "highs|scip|cbc" in helped
    bad = run("plan", "--jellybean-inputs", str(VQA_INPUTS), "--backend", "gurobi")
    assert bad.exit_code == 2 and "'gurobi' is not one of" in bad.output
    ok = run("plan", "--jellybean-inputs", str(VQA_INPUTS), "--backend", "highs", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["solver"]["status"] == "OPTIMAL"


def test_a_plan_names_its_inputs_relative_to_itself_and_works_from_anywhere(specs, tmp_path, monkeypatch):
    from jellybean.agents.deployment import resolve_inputs
    from jellybean.planner.render import read_plan

    p = specs.write()
    monkeypatch.chdir(p["workflow"].parent.parent)
    rel = {k: str(p[k].relative_to(Path.cwd())) for k in ("workflow", "zoo", "infrastructure")}
    out = Path("plans") / "deep" / "plan.yaml"
    result = run("plan", "-w", rel["workflow"], "-z", rel["zoo"], "-i", rel["infrastructure"], "-o", str(out))
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load(out.read_text())["inputs"]
    assert saved["workflow"] == str(Path("..") / ".." / rel["workflow"])
    # From another working directory, the plan still finds the files it was made from.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan_path = out.resolve()
    monkeypatch.chdir(elsewhere)
    inputs = resolve_inputs(read_plan(plan_path), plan_path, {})
    assert inputs.workflow.name == "mini"
