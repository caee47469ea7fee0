"""What agent processes left in their logs, for a test's clean-up to show."""

from __future__ import annotations

from pathlib import Path


def print_agent_tracebacks(workdir: Path) -> None:
    """The end of every `agent-*.log` in ``workdir`` that holds a traceback (pytest shows it with
    a failure): an agent process dies in its own log, not in the test's."""
    for log in workdir.glob("agent-*.log"):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"--- {log.name}\n{text[-3000:]}")
