"""Load traces (`replay --trace`): reading them, the clock they make, and a replay into real
agents that follows one (issue 14, item 4)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jellybean.agents.broker import MosquittoBroker, find_mosquitto
from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.replay import open_scenario
from jellybean.cli.run import spawn_agents, start_controller
from jellybean.errors import JellyBeanError
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.replay.trace import read_trace

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
TRACES = REPO / "examples" / "traces"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_the_shipped_traces_read():
    modes = {p.stem: read_trace(p).mode for p in sorted(TRACES.glob("*.csv"))}
    assert modes == {"bursty": "cameras", "diurnal": "multiplier", "ramp": "multiplier", "step": "multiplier"}


def test_a_multiplier_trace_runs_the_clock_at_its_rate():
    step = read_trace(TRACES / "step.csv")   # 0.6x until 10 s, 1.8x until 20 s, then 0.6x
    assert [step.value_at(t) for t in (0, 9.99, 10, 19.9, 20, 1e6)] == [0.6, 0.6, 1.8, 1.8, 0.6, 0.6]
    assert step.wall_time(0) == 0
    assert step.wall_time(6.0) == pytest.approx(10.0)          # 10 s at 0.6x play 6 s of video
    assert step.wall_time(15.0) == pytest.approx(15.0)         # then 9 s more in 5 s at 1.8x
    assert step.wall_time(24.0) == pytest.approx(20.0)
    assert step.wall_time(30.0) == pytest.approx(30.0)         # 6 s more at 0.6x
    assert step.offered(10.0, 4, 12.0) == pytest.approx(72.0)


def test_a_cameras_trace_keeps_the_recorded_pace():
    bursty = read_trace(TRACES / "bursty.csv")
    assert bursty.wall_time(7.5) == 7.5
    assert [bursty.cameras_at(t) for t in (0, 4, 5.9, 6, 9.5, 10, 100)] == [4, 2, 2, 4, 1, 4, 4]
    assert bursty.offered(10.0, 4, 9.5) == 10.0


@pytest.mark.parametrize("text, words", [
    ("", "empty trace"),
    ("t,speed\n0,1\n", "header is 't,speed'"),
    ("t,multiplier,cameras\n0,1,2\n", "give exactly"),
    ("t,multiplier\n", "a header but no rows"),
    ("t,multiplier\n1,1\n", ":2: the first row is at t = 1"),
    ("t,multiplier\n0,1\n5,2\n5,3\n", ":4: t = 5 after 5"),
    ("t,multiplier\n0,fast\n", ":2: field 'multiplier' is 'fast', not a number"),
    ("t,multiplier\n0,nan\n", ":2: field 'multiplier' is 'nan', not a finite number"),
    ("t,multiplier\n0,inf\n", "not a finite number"),
    ("t,multiplier\n0,0\n", ":2: multiplier 0; give a positive multiple"),
    ("t,cameras\n0,2.5\n", ":2: cameras 2.5; give a whole number"),
    ("t,cameras\n0,-1\n", "cameras -1"),
    ("t,cameras\n0\n", ":2: 1 field(s); give two"),
])
def test_a_malformed_trace_is_refused_with_its_line_field_and_fix(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(JellyBeanError) as info:
        read_trace(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_a_missing_trace_file_says_what_to_give(tmp_path):
    with pytest.raises(JellyBeanError, match="cannot read the trace"):
        read_trace(tmp_path / "nope.csv")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    tmp = tmp_path_factory.mktemp("trace-run")
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    broker = MosquittoBroker(None, None, workdir=tmp / "broker").start()
    broker.wait_ready()
    procs, controller = {}, None
    try:
        procs = spawn_agents(dep, broker.url, tmp)
        controller = start_controller(dep, broker.url, None, 60.0, 5000.0, True)
        threading.Thread(target=controller.run, name="controller", daemon=True).start()
        write_scene(tmp / "scene", SceneConfig(cameras=2, seconds=6, seed=7))
        yield dep, broker.url, open_scenario(tmp / "scene", None)
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()


def test_a_replay_offers_the_load_its_trace_says_and_loses_nothing(deployment, tmp_path):
    dep, url, scenario = deployment
    # 1x for 2 s, 3x for 1 s (3 s of video), 1x after: 6 s of video in 4 s.
    trace = read_trace(write(tmp_path, "t,multiplier\n0,1\n2,3\n3,1\n"))
    data = BrokerReplay(url, trace=trace).run(scenario)
    result = build_result(data, scenario, dep.plan)
    totals = result.totals()
    assert totals.frames_in == 120 and (totals.frames_out, totals.lost, totals.duplicates) == (120, 0, 0)
    assert result.trace == trace.path and result.held_back == 0
    published_over = data.offered[-1][0]
    assert 3.4 < published_over < 5.5, data.offered     # 4 s of wall clock for 6 s of video
    def rate(a, b):
        points = [(t, n) for t, n in data.offered if a <= t <= b]
        return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
    assert rate(2.1, 2.9) > 2.2 * rate(0.2, 1.9), data.offered   # 60 frames/s against 20


def test_a_cameras_trace_holds_back_the_cameras_it_switches_off(deployment, tmp_path):
    dep, url, scenario = deployment
    trace = read_trace(write(tmp_path, "t,cameras\n0,2\n2,1\n4,2\n"))   # the second camera off for 2 s
    data = BrokerReplay(url, trace=trace).run(scenario)
    result = build_result(data, scenario, dep.plan)
    totals = result.totals()
    assert result.held_back == pytest.approx(20, abs=2)          # 2 s of one camera at 10 fps
    assert totals.frames_in == 120 - result.held_back
    assert (totals.frames_out, totals.lost, totals.duplicates) == (totals.frames_in, 0, 0)
    off = sorted(result.cameras)[1]
    assert result.cameras[off].frames_in == 60 - result.held_back


def test_speed_and_a_trace_do_not_mix():
    with pytest.raises(JellyBeanError, match="scale the trace's multipliers"):
        BrokerReplay("mqtt://127.0.0.1:1", speed=2.0, trace=read_trace(TRACES / "step.csv"))


def test_the_cli_refuses_a_trace_where_it_cannot_apply(tmp_path):
    from typer.testing import CliRunner

    from jellybean.cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["replay", str(tmp_path), "--local", "--plan", str(tmp_path / "p.yaml"),
                              "--trace", str(TRACES / "step.csv")])
    assert out.exit_code != 0 and "--trace is not supported with --local" in out.output
    out = runner.invoke(app, ["up", str(EXAMPLE), "--trace", str(TRACES / "step.csv"), "--workdir", str(tmp_path / "u")])
    assert out.exit_code != 0 and "give --replay DATASET too" in out.output
    bad = write(tmp_path, "t,multiplier\n0,-2\n")
    out = runner.invoke(app, ["up", str(EXAMPLE), "--replay", str(tmp_path), "--trace", str(bad),
                              "--workdir", str(tmp_path / "u")])
    assert out.exit_code != 0 and f"{bad}:2: multiplier -2" in out.output and "Traceback" not in out.output
