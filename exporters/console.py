"""``console``: one readable line per security event, for development."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from sqreen_otel._display import safe_text
from sqreen_otel._shipping.event_model import EventExporter, SecurityEvent, iso_time
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome


def _compact(mapping: dict[str, Any]) -> str:
    """``{key=value, ...}``: keys escaped, values as reprs (which escape control characters)."""
    return "{" + ", ".join(f"{safe_text(key)}={value!r}" for key, value in mapping.items()) + "}"


def format_event(event: SecurityEvent) -> str:
    """``time name user={...} ip=... METHOD /path params={...} ua=... props={...}`` on one line."""
    request = event.request
    parts = [iso_time(event.timestamp_ns), safe_text(event.name)]
    if event.user_identifiers:
        parts.append("user=" + _compact(event.user_identifiers))
    if request.client_ip:
        parts.append(f"ip={safe_text(request.client_ip)}")
    if request.method or request.path:
        parts.append(safe_text(f"{request.method or '-'} {request.path or '-'}"))
    if request.parameters:
        parts.append("params=" + _compact(request.parameters))
    if request.user_agent:
        parts.append(f"ua={request.user_agent!r}")
    if event.properties:
        parts.append("props=" + _compact(event.properties))
    return " ".join(parts)


class ConsoleEventExporter(EventExporter):
    """Writes each security event of the exported spans as one line to ``out`` (stderr)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stderr
        self._lock = threading.Lock()

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        lines = [format_event(event) for event in events]
        if lines:
            with self._lock:
                self._out.write("\n".join(lines) + "\n")
                self._out.flush()
        return SUCCESS
