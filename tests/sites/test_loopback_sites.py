"""`up --isolate` where namespaces cannot be made: one Mosquitto per site on loopback ports, still
bridged along the links, and it says why. Runs as any user."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from typer.testing import CliRunner

from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.main import app
from jellybean.cli.run import agent_names, spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.sites import brokers as site_brokers
from jellybean.sites.brokers import SiteBrokers

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"


def test_without_namespaces_each_site_gets_a_bridged_broker_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setattr(site_brokers, "available", lambda: (False, "network namespaces need root"))
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=30, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    names = agent_names(dep)
    sites = SiteBrokers(dep, tmp_path / "brokers", names).start()
    procs, controller = {}, None
    try:
        assert sites.network is None and sites.fallback == "network namespaces need root"
        assert sites.wraps() == {} and sites.wire_recorder() is None
        urls = {site: c.url for site, c in sites.configs.sites.items()}
        assert len(set(urls.values())) == 3 and all("127.0.0.1" in u for u in urls.values()), urls
        assert len(set(sites.pids().values())) == 3
        procs = spawn_agents(dep, sites.agent_urls(), tmp_path, ca=sites.ca)
        controller = start_controller(dep, sites.controller_url, sites.ca, 90.0, 5000.0, True,
                                      takeover=sites.takeover_url)
        threading.Thread(target=controller.run, name="controller", daemon=True).start()
        write_scene(tmp_path / "scene", SceneConfig(cameras=2, seconds=4, seed=7))
        # `replay --sites`: the cameras publish at the crossing's broker only; results come back at
        # the cloud's, so every item crossed the bridges.
        out = CliRunner().invoke(app, ["replay", str(tmp_path / "scene"), "--sites", str(sites.configs.dir), "--json",
                                       "-q"])
        assert out.exit_code == 0, out.output
        result = json.loads(out.stdout)
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        sites.stop()
    cams = result["cameras"].values()
    assert sum(c["frames_in"] for c in cams) == 80
    assert [sum(c[k] for c in cams) for k in ("frames_out", "lost", "duplicates")] == [80, 0, 0]
    links = {(link["from"], link["to"]): link["bytes"] for link in result["links"]}
    assert links[("crossing", "hub")] > 0 and links[("hub", "cloud")] > 0, links
    assert not sites.pids()


def test_isolate_refuses_options_of_the_single_broker(tmp_path):
    result = CliRunner().invoke(app, ["up", str(EXAMPLE), "--isolate", "--embedded", "--port", "1884",
                                      "--workdir", str(tmp_path / "up")])
    assert result.exit_code != 0
    assert "--isolate runs a Mosquitto per site" in result.output and "drop --embedded and --port" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "up").exists()
