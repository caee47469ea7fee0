"""Edge autonomy in the controller: an agent that falls silent (its site cut off) keeps its work
until the outage budget runs out; only then is it re-planned away. Real Mosquitto, real agents;
the silence is a real agent stopped with SIGSTOP (its connection stays open, as behind a cut WAN
link, so no last will comes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from jellybean.agents.broker import MosquittoBroker, find_mosquitto
from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.run import spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
BUDGET_S = 6.0
needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := predicate()):
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout:g} s")


def event_at(controller, words: str) -> float | None:
    return next((e.at for e in list(controller.events) if words in e.what), None)


@needs_mosquitto
def test_a_silent_agent_keeps_its_work_for_the_outage_budget_then_is_replanned(tmp_path):
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    broker = MosquittoBroker(None, None, workdir=tmp_path / "broker").start()
    broker.wait_ready()
    procs, controller, stopped = {}, None, None
    try:
        procs = spawn_agents(dep, broker.url, tmp_path)
        controller = start_controller(dep, broker.url, None, 60.0, 5000.0, True, outage_budget=BUDGET_S)
        threading.Thread(target=controller.run, name="controller", daemon=True).start()
        stopped = procs["hub"]
        os.kill(stopped.pid, signal.SIGSTOP)
        stopped_at = time.time()
        silent = wait_for(lambda: event_at(controller, "agent hub at hub unreachable"), 20, "no unreachable event")
        assert controller.replans == 0 and "hub" not in controller.lost
        replanned = wait_for(lambda: event_at(controller, "over the outage budget"), BUDGET_S + 20,
                             "no re-plan after the budget")
        # Not before the budget, counted from the last heartbeat (at most a heartbeat, 1 s, before the stop).
        assert replanned - stopped_at >= BUDGET_S - 1.2, (stopped_at, silent, replanned)
        assert replanned > silent
        wait_for(lambda: controller.replans >= 1 and "hub" in controller.lost, 20, "the hub not re-planned away")
        os.kill(stopped.pid, signal.SIGCONT)
        stopped = None
        wait_for(lambda: event_at(controller, "agent hub is back"), 20, "the hub not back")
        wait_for(lambda: not controller.lost, 20, "the hub not given its work again")
    finally:
        if stopped is not None:
            os.kill(stopped.pid, signal.SIGCONT)
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()


def test_the_outage_budget_must_be_a_finite_number_of_seconds(tmp_path):
    from jellybean.agents.controller import Controller
    from jellybean.errors import JellyBeanError

    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(JellyBeanError, match="outage budget"):
            Controller(dep, "mqtt://127.0.0.1:1", outage_budget_s=bad)
