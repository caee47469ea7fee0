"""`jellybean replay --local`: the real app, the example plan, a synthetic scene, bad data."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.replay.scene import SceneConfig, write_scene

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
runner = CliRunner()


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "plan.yaml"
    result = runner.invoke(app, ["plan", "-w", str(EXAMPLE / "workflow.yaml"), "-z", str(EXAMPLE / "zoo.yaml"),
                                 "-i", str(EXAMPLE / "infrastructure.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _scene(root: Path, seconds: float = 4) -> Path:
    write_scene(root, SceneConfig(cameras=4, seconds=seconds, seed=11))
    return root


def _replay(*args: str):
    return runner.invoke(app, ["replay", *args])


def test_local_replay_reports_counts_latency_links_and_idf1(tmp_path, plan):
    scene = _scene(tmp_path / "scene")
    report, sub = tmp_path / "report", tmp_path / "sub.txt"
    tracks = tmp_path / "tracks.duckdb"
    result = _replay(str(scene), "--local", "--plan", str(plan), "--speed", "0", "--json", "--report", str(report),
                     "--submission", str(sub), "--track-store", str(tracks))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["partial"] is False and len(data["cameras"]) == 4
    assert all(c["frames_in"] == 40 and c["frames_out"] == 40 for c in data["cameras"].values())
    assert len(data["latency_ms"]) == 160
    assert data["tracking"]["idf1"] > 0.5 and data["plan_cost_per_hour"] > 0
    assert {(l["from"], l["to"]) for l in data["links"]} == {("crossing", "hub"), ("hub", "cloud")}
    assert (report / "index.html").is_file() and (report / "latency_cdf.png").is_file()
    lines = sub.read_text().splitlines()
    assert lines and all(len(line.split()) == 9 for line in lines)
    # --track-store: the delivered tracks' boxes, one observation each (tracks seen once have no speed)
    from jellybean.analytics.store import info

    stored = info(tracks)
    assert stored.hz == 10.0 and {a.intersection for a in stored.approaches} == {"S01"}
    assert 0.5 * len(lines) < stored.rows <= len(lines)


def test_bad_data_is_named_and_the_rest_of_the_replay_goes_on(tmp_path, plan):
    scene = _scene(tmp_path / "scene")
    s01 = scene / "train" / "S01"
    (s01 / "c002" / "vdo.avi").unlink()                                   # a missing video
    gt = s01 / "c003" / "gt" / "gt.txt"
    text = gt.read_text()
    gt.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n12,34,5")  # a truncated gt file
    video = s01 / "c004" / "vdo.avi"
    blob = video.read_bytes()
    video.write_bytes(blob[: len(blob) // 2])                            # frames that cannot be read
    result = _replay(str(scene), "--local", "--plan", str(plan), "--speed", "0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["partial"] is True
    problems = "\n".join(data["problems"])
    assert "c002" in problems and "vdo.avi" in problems
    assert "c003" in problems and "gt.txt" in problems
    assert "c004" in problems
    assert "c002" not in " ".join(data["cameras"])
    assert data["cameras"]["train/S01/c001"]["frames_out"] == 40
    assert 0 < data["cameras"]["train/S01/c004"]["frames_in"] < 40


def test_replay_needs_exactly_one_mode_and_a_plan_for_local(tmp_path, plan):
    scene = _scene(tmp_path / "scene", seconds=1)
    for args, words in ((["--local"], "--plan"), ([], "exactly one"),
                        (["--local", "--plan", str(plan), "--broker", "mqtt://x"], "exactly one")):
        result = _replay(str(scene), *args)
        assert result.exit_code != 0 and words in result.output and "Traceback" not in result.output
    result = _replay(str(tmp_path / "nowhere"), "--local", "--plan", str(plan))
    assert result.exit_code == 2 and "nowhere" in result.output


def test_a_broker_replay_whose_frames_never_come_out_fails_and_says_why(tmp_path, plan, mosquitto):
    """Routes announce a deployment whose agents are not there: every frame is published, none comes
    out; the replay is partial with the reason and the command exits 1, not 0 with 'complete'."""
    from jellybean.agents import topics
    from jellybean.agents.deployment import build_routes
    from jellybean.agents.transport import MqttLink
    from jellybean.cli.common import load_deployment

    routes = build_routes(load_deployment(plan, None, None, None), 1)
    link = MqttLink(mosquitto, "fake-controller", clean=True).start()
    try:
        link.wait_connected()
        done = threading.Event()
        link.publish(topics.ROUTES, routes.to_bytes(), retain=True, on_done=done.set)
        assert done.wait(10), "the broker did not acknowledge the routes"
    finally:
        link.stop()
    scene = _scene(tmp_path / "scene", seconds=1)
    result = _replay(str(scene), "--broker", mosquitto, "--drain", "2", "--json")
    assert result.exit_code == 1, result.output
    assert "none of the" in result.output and "frames came out" in result.output
    report = json.loads(result.stdout[:result.stdout.rindex("}") + 1])
    assert report["partial"] is True and report["cameras"]
    assert all(c["frames_out"] == 0 and c["lost"] == c["frames_in"] > 0 for c in report["cameras"].values())
