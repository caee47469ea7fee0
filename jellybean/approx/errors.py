"""The error the approximate-feature code raises for bad input; a JellyBeanError, so the CLI layer
reports it like any other."""

from __future__ import annotations

from jellybean.errors import JellyBeanError


class ApproxError(JellyBeanError):
    """Bad input to an estimator, the propagation, the priority or the stopping rule; the message
    names the argument and says what to give instead."""
