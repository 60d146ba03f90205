"""The ``sqreen-otel`` command: events (the Event Explorer), actions (security responses by hand)."""

from __future__ import annotations

from sqreen_otel._cli.events import main

__all__ = ["main"]
