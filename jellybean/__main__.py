"""`python -m jellybean ...` is the `jellybean` command (used to start agent processes)."""

from jellybean.cli.main import app

app()
