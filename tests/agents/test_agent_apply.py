"""An assignment is atomic for the data: an agent reports it only once its tasks run, and the items
that arrive while a task loads wait for it (against a real Mosquitto)."""

from __future__ import annotations

import threading
import time

from jellybean.agents import topics
from jellybean.agents.agent import Agent, AgentOptions
from jellybean.agents.items import Item, decode_item, encode_item
from jellybean.agents.messages import Assignment, Heartbeat, Task, parse_message
from jellybean.agents.operators.base import Operator, OperatorConfig, register
from jellybean.agents.transport import MqttLink


def _wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


_LOADING = threading.Event()


@register("test-slow-start")
class _SlowStart(Operator):
    """Loads until the test lets it (as a large model would), then passes frames on."""

    keyed = "item"
    accepts = ("frame",)
    produces = "frame"

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        assert _LOADING.wait(30), "the test never let the operator finish loading"

    def process(self, items):
        return [i.derive("frame") for i in items]


def test_an_assignment_counts_only_once_its_tasks_run_and_items_wait_for_them(mosquitto):
    """While a task loads, the agent keeps reporting the old version and holds the items that
    arrive for it; once it runs, the version switches and every held item is processed."""
    _LOADING.clear()
    agent = Agent(AgentOptions(name="solo", hardware="hw", broker=mosquitto, heartbeat_s=0.1)).start()
    beats: list[Heartbeat] = []
    out: list[Item] = []
    link = MqttLink(mosquitto, "watcher", clean=True)
    link.subscribe(topics.heartbeat("solo"), lambda t, p: beats.append(parse_message(p, t, Heartbeat)))
    link.subscribe("jb/v1/sink/t", lambda t, p: out.append(decode_item(p, t)))
    link.start()
    try:
        link.wait_connected()
        agent.link.wait_connected()
        assignment = Assignment(agent="solo", site="solo", version=7, plan="p", workflow="t",
                                tasks=[Task(operator="op", variant="v", runtime="test-slow-start")],
                                placements={"op": {"solo": 1.0}}, downstream={"op": []}, sinks=["op"],
                                sink_topic="jb/v1/sink/t")
        link.publish(topics.assignment("solo"), assignment.to_bytes(), retain=True)
        assert _wait(lambda: agent._starting == {"op"}), "the agent did not start loading the task"
        now = time.time()
        for f in range(1, 6):
            link.publish(topics.data("solo", "op"), encode_item(Item("cam", f, now, "frame", session="s1")))
        assert _wait(lambda: len(agent._held) == 5), f"{len(agent._held)} items held"
        seen = len(beats)
        assert _wait(lambda: len(beats) >= seen + 3)           # heartbeats go on while it loads...
        assert all(b.assignment_version != 7 and "op" not in b.running for b in beats)   # ...with the old version
        _LOADING.set()
        assert _wait(lambda: len(out) == 5), f"{len(out)} of 5 items came out"
        assert sorted(i.frame for i in out) == [1, 2, 3, 4, 5] and all(i.dropped is None for i in out)
        assert _wait(lambda: beats and beats[-1].assignment_version == 7 and beats[-1].running == ["op"])
    finally:
        _LOADING.set()
        link.stop()
        agent.stop()
