"""The error the analytics code raises for bad input; a JellyBeanError, so the CLI reports it."""

from __future__ import annotations

from jellybean.errors import JellyBeanError


class AnalyticsError(JellyBeanError):
    """A missing or garbled store, an unknown intersection, a bad query option; the message names the
    file or field and the fix."""
