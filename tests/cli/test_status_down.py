"""`jellybean up` (a real one, as a subprocess) seen by `jellybean status` and stopped by `jellybean
down`; status on an empty broker; down without, or with a stale, state file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jellybean.agents.broker import find_mosquitto
from jellybean.agents.upstate import UpState, record, state_path, write_state
from jellybean.cli.main import app
from jellybean.planner.render import read_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
AGENTS = ["cloud", "crossing", "hub"]
runner = CliRunner()


def _wait_for(what: str, pred, proc: subprocess.Popen, timeout: float = 180.0):
    """Poll `pred` until it returns something truthy; fail at once if `up` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"up exited ({proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {timeout:.0f} s")


def _recorded(workdir: Path, agents: int):
    """The state file once `up` has recorded its broker and `agents` agents."""
    try:
        state = UpState.model_validate_json(state_path(workdir).read_text())
    except (OSError, ValueError):
        return None
    roles = [p.role for p in state.processes]
    return state if state.broker_url and roles.count("agent") == agents and "broker" in roles else None


@pytest.fixture
def up(tmp_path):
    """`jellybean up examples/aicity` running in the background until the test stops it."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: `up` here needs the real broker", pytrace=False)
    workdir = tmp_path / "up"
    proc = subprocess.Popen([sys.executable, "-m", "jellybean", "up", str(EXAMPLE), "--workdir", str(workdir), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield workdir, proc
    finally:
        if proc.poll() is None:   # the test failed before `down`: stop it the way down does
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _status(url: str):
    result = runner.invoke(app, ["status", "--broker", url, "--json", "--wait", "30"])
    return result, (json.loads(result.stdout) if result.exit_code == 0 else None)


def _gone(pid: int, start_ticks: int) -> bool:
    """The recorded process no longer exists (its PID is free, or another process's now)."""
    r = record("x", "x", pid)
    return r is None or r.start_ticks != start_ticks


def test_status_shows_what_up_runs_and_down_stops_all_of_it(up):
    workdir, proc = up
    state = _wait_for("the broker and three agents in up.json", lambda: _recorded(workdir, len(AGENTS)), proc)
    assert state.up is not None and state.up.pid == proc.pid

    def deployed():
        result, doc = _status(state.broker_url)
        if doc and doc["plan"] and all(a["state"] == "online" and a["assignment_version"] == doc["plan"]["version"]
                                       for a in doc["agents"]):
            return doc
        return None

    doc = _wait_for("a deployed plan in `jellybean status`", deployed, proc)
    plan = read_plan(workdir / "plan.yaml")
    assert doc["plan"]["cost"]["total"] == pytest.approx(plan.cost.total)
    assert doc["plan"]["name"] == plan.name
    assert [a["name"] for a in doc["agents"]] == AGENTS
    for a in doc["agents"]:
        assert a["published_version"] == doc["plan"]["version"] and a["tasks"], a
        assert a["pid"] == next(p.pid for p in state.processes if p.name == a["name"])
    assert {(link["from"], link["to"]) for link in doc["links"]} == {(link.from_, link.to) for link in plan.links}
    # up said how to see it and stop it
    table = runner.invoke(app, ["status", "--broker", state.broker_url])
    assert table.exit_code == 0 and f"plan {plan.name} version {doc['plan']['version']}" in table.stdout
    for name in AGENTS:
        assert name in table.stdout

    result = runner.invoke(app, ["down", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert f"stopped up (pid {proc.pid})" in result.output
    assert proc.wait(30) == 0   # up stopped itself on SIGTERM, cleanly
    stderr = proc.stderr.read()
    assert "stop it with: jellybean down --workdir " + str(workdir) in stderr
    assert "see it with: jellybean status --broker " + state.broker_url in stderr
    assert "Traceback" not in stderr
    for p in state.processes:
        assert _gone(p.pid, p.start_ticks), f"{p.label} (pid {p.pid}) still runs"
        assert f"stopped {p.label} (pid {p.pid})" in result.output
    assert "killed" not in result.output       # everything stopped when asked
    assert not state_path(workdir).exists()


def test_down_while_up_is_still_starting_stops_its_agents_and_broker(up):
    """SIGTERM before the controller has deployed: `up` still stops what it started."""
    workdir, proc = up
    state = _wait_for("three agents in up.json", lambda: _recorded(workdir, len(AGENTS)), proc)
    result = runner.invoke(app, ["down", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    proc.wait(30)
    assert "Traceback" not in proc.stderr.read()
    for p in state.processes:
        assert _gone(p.pid, p.start_ticks), f"{p.label} (pid {p.pid}) still runs"
    assert "killed" not in result.output
    assert not state_path(workdir).exists()


def test_status_on_an_empty_broker_says_nothing_runs_there(mosquitto):
    result = runner.invoke(app, ["status", "--broker", mosquitto, "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"nothing is running on {mosquitto}" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_down_without_a_state_file_fails_clearly(tmp_path):
    result = runner.invoke(app, ["down", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"no `jellybean up` is recorded in {tmp_path}" in text and "--workdir" in text


def test_down_with_a_stale_state_file_removes_it_and_signals_nothing(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    recorded = record("up", "up", gone.pid)
    gone.wait()
    assert recorded is not None   # recorded while it ran (or, at worst, as it exited)
    write_state(tmp_path, UpState(workdir=str(tmp_path), broker_url="mqtt://127.0.0.1:1", started_at=time.time(),
                                  processes=(recorded,)))
    result = runner.invoke(app, ["down", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "nothing was running" in text and "removed the stale file" in text
    assert not state_path(tmp_path).exists()
