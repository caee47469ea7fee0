"""`python -m jellybean ...` is the `jellybean` command (used to start agent processes)."""

import sys

if sys.argv[1:2] == ["agent"]:
    # Agents start often (one per worker, and again after every re-plan that moves one): load
    # only the commands that run plans, not the planner and the rest (a third of a second each).
    from jellybean.cli import run  # noqa: F401  (registers `agent` on the app)
    from jellybean.cli.app import app
else:
    from jellybean.cli.main import app

app()
