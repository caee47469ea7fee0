"""The `jellybean` command: the app from `app.py` with every command group registered on it."""

from __future__ import annotations

from jellybean.cli.app import app, hoist_debug, internal_error_line
# Each import registers that module's commands on `app`.
from jellybean.cli import analytics, broker, plan, replay, run, scene, schema, simulate, status, validate, zoo  # noqa: F401

__all__ = ["app", "hoist_debug", "internal_error_line"]
