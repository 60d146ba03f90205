"""``http``: JSON batches in Sqreen's signal model, POSTed to ``SQREEN_INGESTION_URL``.

One *point* per security event (format: docs/exporters.md), gzip-compressed, with
``X-Api-Key: $SQREEN_TOKEN`` and ``X-App-Name: $SQREEN_APP_NAME``. The connection, TLS,
redirects, response bounds and what each status means are ``_transport``'s.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from typing import Any

from sqreen_otel._shipping.event_model import SecurityEvent, iso_time
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome
from sqreen_otel._version import __version__
from sqreen_otel.exporters._transport import HttpEventExporter, HttpTransport

__all__ = ["SqreenHttpExporter", "encode_points", "point"]

PAYLOAD_SCHEMA = "track_event/2020-01-01T00:00:00.000Z"
CONTEXT_SCHEMA = "http/2020-01-01T00:00:00.000Z"
_SOURCES = {"track": "sqreen:sdk:track", "auth": "sqreen:sdk:auth_track", "signup": "sqreen:sdk:signup_track"}


def point(event: SecurityEvent, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """One security event as a Sqreen signal point (``context``: its request's, if built already)."""
    request = event.request
    name = event.name if event.name.startswith("sq.") else f"sq.sdk.{event.name}"
    return {
        "type": "point",
        "signal_name": name,
        "source": _SOURCES.get(event.event_type, f"sqreen:sdk:{event.event_type}"),
        "time": iso_time(event.timestamp_ns),
        "payload_schema": PAYLOAD_SCHEMA,
        "payload": {"properties": event.properties, "user_identifiers": event.user_identifiers},
        "context_schema": CONTEXT_SCHEMA,
        "context": context if context is not None else http_context(event),
        "actor": {
            "ip_addresses": [request.client_ip] if request.client_ip else [],
            "user_agent": request.user_agent,
            "identifiers": event.user_identifiers,
        },
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        **({"event_id": event.key} if event.key else {}),
    }


def http_context(event: SecurityEvent) -> dict[str, Any]:
    request = event.request
    return {
        "client_ip": request.client_ip,
        "user_agent": request.user_agent,
        "path": request.path,
        "verb": request.method,
        "parameters": request.parameters,
    }


def encode_points(events: Sequence[SecurityEvent]) -> tuple[int, bytes]:
    """(number of points, gzip-compressed JSON array of points)."""
    points = []
    contexts: dict[int, dict[str, Any]] = {}
    for event in events:
        context = contexts.get(id(event.request))
        if context is None:  # one per request, shared by its events
            context = contexts[id(event.request)] = http_context(event)
        points.append(point(event, context))
    body = json.dumps(points, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return len(points), gzip.compress(body, compresslevel=6)


class SqreenHttpExporter(HttpEventExporter):
    """POSTs security events to an ingestion endpoint (see the module docstring)."""

    def __init__(
        self, url: str, token: str | None = None, app_name: str | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"sqreen-otel/{__version__}",
        }
        if token:
            headers["X-Api-Key"] = token
        if app_name:
            headers["X-App-Name"] = app_name
        self._use(HttpTransport(url, headers, timeout))

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        count, body = encode_points(events)
        if not count:
            return SUCCESS
        return self._send(body)

    def _send(self, body: bytes) -> ExportOutcome:
        """POST one gzip-compressed batch and classify the answer."""
        return self._transport.post(body)
