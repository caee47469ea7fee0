"""A replay of a scene through one agent per device while a fault hits one of the two re-ID
agents (tests/agents/test_parity_run.py, test_resend_run.py): real Mosquitto, the controller,
every agent process stopped after, and any agent traceback printed. A watcher on the broker
records which re-ID agent each item was addressed to and the members of each parity query."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jellybean.agents import topics
from jellybean.agents.broker import MosquittoBroker, find_mosquitto
from jellybean.agents.deployment import Deployment, build_assignments
from jellybean.agents.items import decode_item
from jellybean.agents.processes import stop_processes
from jellybean.agents.transport import MqttLink
from jellybean.parity.groups import _key, members_of
from jellybean.cli.run import agent_names, spawn_agents, start_controller
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result
from agent_logs import print_agent_tracebacks


@dataclass
class FaultRun:
    data: object
    result: object
    reid_agents: list[str]
    events: list[str]
    addressed: dict[tuple, str]        # item key -> the re-ID agent whose own topic it was sent to
    groups: list[list[tuple]]          # each parity query's members (item keys)


def run_with_reid_fault(dep: Deployment, scene, tmp_path: Path,
                        fault: Callable[[subprocess.Popen], None]) -> FaultRun:
    """Replay `scene` while `fault` (on a thread of its own) acts on the first re-ID agent."""
    names = agent_names(dep, per_worker=True)
    sites: dict[str, list[str]] = {}
    for name, site in names.items():
        sites.setdefault(site, []).append(name)
    tasks = {a: [t.operator for t in asg.tasks] for a, asg in build_assignments(dep, sites, 1).items()}
    reid_agents = [a for a, ops in tasks.items() if ops == ["reid"]]
    assert len(reid_agents) == 2, tasks

    broker = MosquittoBroker(None, None, workdir=tmp_path / "broker", executable=find_mosquitto()).start()
    broker.wait_ready()
    addressed: dict[tuple, str] = {}
    groups: list[list[tuple]] = []
    watch = MqttLink(broker.url, "test-watch", clean=True)
    watch.subscribe(topics.direct("hub", "reid", "+"),
                    lambda t, p: addressed.setdefault(decode_item(p, t).key, t.rsplit("/", 1)[-1]), qos=0)
    watch.subscribe(topics.data("hub", "reid.parity"),
                    lambda t, p: groups.append([_key(m) for m in members_of(decode_item(p, t))]), qos=0)
    watch.start()
    watch.wait_connected()
    procs = spawn_agents(dep, broker.url, tmp_path, per_worker=True)
    controller = start_controller(dep, broker.url, None, 60.0, 5000.0, quiet=True, expect=tuple(names))
    threading.Thread(target=controller.run, daemon=True).start()
    victim = procs[reid_agents[0]]
    try:
        injector = threading.Thread(target=fault, args=(victim,), daemon=True)
        injector.start()
        data = BrokerReplay(broker.url, speed=1.0, drain_s=40).run(scene)
        injector.join(timeout=30)
        result = build_result(data, scene, dep.plan, evaluate=False)
    finally:
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGCONT)
        events = [e.what for e in controller.events]
        controller.stop()
        watch.stop()
        stop_processes(procs.values())
        broker.stop()
        print_agent_tracebacks(tmp_path)
    return FaultRun(data, result, reid_agents, events, addressed, groups)
