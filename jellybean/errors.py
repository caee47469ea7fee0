"""The one exception base of the project; only the CLI layer catches it."""

from __future__ import annotations


class JellyBeanError(Exception):
    """A problem the user can fix: the message names the file or input, the field and the fix."""


class SpecError(JellyBeanError):
    """One or more problems in an input file, each as `file: path: what is wrong, what to do`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class InfeasibleError(JellyBeanError):
    """No plan satisfies the constraints; the message says what to relax."""


class SolverError(JellyBeanError):
    """The solver stopped without a usable plan (time limit without a solution, abnormal status)."""


class NotSupportedError(JellyBeanError):
    """A requested capability that this build does not provide."""
