"""The simulator (`jellybean simulate`): the shared adapt policy over a fluid model of the agents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jellybean.adapt.runtime import AdaptOptions
from jellybean.adapt.simulate import SimSettings, prepare, simulate
from jellybean.cli.main import app
from jellybean.errors import JellyBeanError
from jellybean.planner.build import load_inputs
from jellybean.replay.trace import read_trace

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "aicity"
INPUTS = ["-w", str(EXAMPLE / "workflow.yaml"), "-z", str(EXAMPLE / "zoo.yaml"), "-i", str(EXAMPLE / "infrastructure.yaml")]
runner = CliRunner()


@pytest.fixture(scope="module")
def scenario():
    return prepare(load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml"))


def _trace(tmp_path: Path, rows: str, mode: str = "multiplier"):
    path = tmp_path / "trace.csv"
    path.write_text(f"t,{mode}\n{rows}")
    return read_trace(path)


@pytest.mark.parametrize("policy", ["static", "hardware", "loki"])
def test_every_frame_offered_ends_once(scenario, tmp_path, policy):
    # 3.5x: beyond what any policy serves (loki's strided detector passes on half the crops, so
    # it still serves 2.5x)
    trace = _trace(tmp_path, "0,0.6\n60,3.5\n120,0.6\n")
    run = simulate(scenario, trace, AdaptOptions(policy=policy), SimSettings(duration_s=180))
    t = run.totals
    assert t["frames_offered"] == pytest.approx(40 * (60 * 0.6 + 60 * 3.5 + 60 * 0.6))
    assert t["frames_on_time"] + t["frames_late"] + t["frames_dropped"] == pytest.approx(t["frames_offered"], rel=1e-9)
    assert sum(t["dropped_by_reason"].values()) == pytest.approx(t["frames_dropped"], rel=1e-9)
    assert t["frames_dropped"] > 0.1 * t["frames_offered"]  # the overload shows
    assert t["frames_on_time"] > 0.25 * t["frames_offered"]
    # At 0.6x everything is served within the SLO, before and after the burst.
    quiet = [k for k, x in enumerate(run.t) if 20 <= x < 55 or 150 <= x < 175]
    assert all(run.dropped[k] == 0 and run.served[k] == pytest.approx(24, rel=1e-6) for k in quiet)
    assert all(lat < 1000 for k, lat in enumerate(run.latency_ms) if k in quiet)


def _burst(scenario, tmp_path, policy):
    trace = _trace(tmp_path, "0,0.6\n120,1.2\n360,0.6\n")
    return simulate(scenario, trace, AdaptOptions(policy=policy, elastic=False), SimSettings(duration_s=600))


def test_loki_keeps_up_with_a_burst_that_hardware_scaling_cannot_on_fixed_hardware(scenario, tmp_path):
    hardware, loki = _burst(scenario, tmp_path, "hardware"), _burst(scenario, tmp_path, "loki")
    # The burst outgrows the box (3.4 % of the frames: the agents keep time for what follows the
    # detector, so what it serves gets through; without that rule it was 54 %).
    assert hardware.totals["violations"] > 0.02
    assert loki.totals["violations"] < hardware.totals["violations"] / 5
    assert loki.totals["mean_cost_per_hour"] <= hardware.totals["mean_cost_per_hour"] + 1e-9
    assert {d["phase"] for d in loki.decisions} >= {"accuracy"}  # it scaled accuracy ...
    during = [a for x, a in zip(loki.t, loki.accuracy) if 200 <= x < 350]
    before = [a for x, a in zip(loki.t, loki.accuracy) if 60 <= x < 115]
    after = [a for x, a in zip(loki.t, loki.accuracy) if 500 <= x < 595]
    assert max(during) < min(before) - 0.05
    # ... and went back to the most accurate mix once the burst was over.
    assert min(after) == pytest.approx(max(before), abs=1e-6)


def test_static_never_changes(scenario, tmp_path):
    run = simulate(scenario, _trace(tmp_path, "0,0.6\n30,1.8\n60,0.3\n"), AdaptOptions(policy="static"),
                   SimSettings(duration_s=90))
    assert len(set(run.cost)) == 1 and {d["phase"] for d in run.decisions} == {"static"}
    assert len({round(a, 9) for a in run.accuracy if a == a}) == 1


def test_a_cameras_trace_switches_cameras_off(scenario, tmp_path):
    run = simulate(scenario, _trace(tmp_path, "0,4\n10,1\n20,4\n", "cameras"), AdaptOptions(policy="loki"),
                   SimSettings(duration_s=30))
    assert run.offered[5] == pytest.approx(40) and run.offered[15] == pytest.approx(10)


def test_cli_compares_policies_as_json(tmp_path):
    trace = tmp_path / "burst.csv"
    trace.write_text("t,multiplier\n0,0.6\n20,1.2\n60,0.6\n")
    result = runner.invoke(app, ["simulate", *INPUTS, "--trace", str(trace), "--policy", "hardware", "--policy",
                                 "loki", "--fixed-hardware", "--duration", "90", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["policy"] for r in out["runs"]] == ["hardware", "loki"]
    for r in out["runs"]:
        assert r["frames_on_time"] + r["frames_late"] + r["frames_dropped"] == pytest.approx(r["frames_offered"])
        assert len(r["series"]["t"]) >= 90 and r["decisions"]  # and the queues draining after
    assert out["runs"][1]["violations"] < out["runs"][0]["violations"]


def test_cli_prints_a_table_and_plots(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("t,multiplier\n0,1\n")
    result = runner.invoke(app, ["simulate", *INPUTS, "--trace", str(trace), "--duration", "20",
                                 "--report", str(tmp_path / "r")], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "violations" in result.output and "loki served" in result.output
    assert (tmp_path / "r" / "index.html").is_file() and (tmp_path / "r" / "load.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--policy", "greedy"], "--policy 'greedy' is not one of static, hardware, loki, all"),
    (["--period", "nan"], "--period nan: give a finite number > 0"),
    (["--cameras", "0"], "--cameras 0: give at least 1"),
])
def test_bad_options_are_refused_with_one_clear_message(tmp_path, args, message):
    trace = tmp_path / "t.csv"
    trace.write_text("t,multiplier\n0,1\n")
    result = runner.invoke(app, ["simulate", *INPUTS, "--trace", str(trace), *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_a_bad_trace_is_refused_with_its_line(tmp_path):
    trace = tmp_path / "bad.csv"
    trace.write_text("t,multiplier\n0,1\n5,-2\n")
    result = runner.invoke(app, ["simulate", *INPUTS, "--trace", str(trace)])
    assert result.exit_code == 1
    assert f"{trace}:3: multiplier -2" in " ".join(result.output.split())
    with pytest.raises(JellyBeanError, match="step"):
        SimSettings(step_s=float("inf"))
