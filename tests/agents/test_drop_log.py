"""Drops reach the agent's log with their reasons, one line per interval (issue 12)."""

from __future__ import annotations

import logging

from jellybean.agents.telemetry import AgentTelemetry, DropLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_drop_is_logged_at_once_then_one_line_per_interval(caplog):
    clock = Clock()
    drops = DropLog(every_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="jellybean.agents.telemetry"):
        drops.add("detect", "late")
        assert "detect: 1 late" in caplog.text
        caplog.clear()
        for _ in range(500):
            drops.add("detect", "late")
        drops.add("detect", "queue-full", 3)
        drops.add("reid", "failed", 2)
        assert caplog.text == ""                      # within the interval: counted, not logged
        clock.now += 10.0
        assert drops.flush() == "detect: 500 late, 3 queue-full; reid: 2 failed"
        assert "dropped in the last 10 s" in caplog.text
        caplog.clear()
        assert drops.flush(force=True) is None        # nothing pending: nothing logged
        assert caplog.text == ""


def test_the_agent_counts_and_logs_the_same_drops(caplog):
    telemetry = AgentTelemetry("a1", "site-1")
    with caplog.at_level(logging.WARNING, logger="jellybean.agents.telemetry"):
        telemetry.dropped("detect", "late", 4)
    assert "detect: 4 late" in caplog.text
    sample = telemetry.registry.get_sample_value("jellybean_items_dropped_total",
                                                 {"operator": "detect", "reason": "late"})
    assert sample == 4
