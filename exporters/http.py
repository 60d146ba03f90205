"""``http``: JSON batches in Sqreen's signal model, POSTed to ``SQREEN_INGESTION_URL``.

One *point* per security event (format: docs/http-exporter.md), gzip-compressed, with
``X-Api-Key: $SQREEN_TOKEN`` and ``X-App-Name: $SQREEN_APP_NAME``. TLS certificates are
verified (the system trust store); redirects are not followed. A new connection per batch (one
a minute) keeps it fork-safe. 2xx is delivered; 408, 429 and 5xx are retried (honouring
``Retry-After``); other statuses are permanent rejections.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from sqreen_otel._model import EventExporter, SecurityEvent, iso_time
from sqreen_otel._outcome import SUCCESS, ExportOutcome, ExportStatus
from sqreen_otel._version import __version__

__all__ = ["SqreenHttpExporter", "encode_points", "point"]

PAYLOAD_SCHEMA = "track_event/2020-01-01T00:00:00.000Z"
CONTEXT_SCHEMA = "http/2020-01-01T00:00:00.000Z"
_SOURCES = {"track": "sqreen:sdk:track", "auth": "sqreen:sdk:auth_track", "signup": "sqreen:sdk:signup_track"}
_RETRYABLE = frozenset({408, 429})


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
    body = json.dumps(points, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    return len(points), gzip.compress(body, compresslevel=6)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is reported as the 3xx it is


class SqreenHttpExporter(EventExporter):
    """POSTs security events to an ingestion endpoint (see the module docstring)."""

    def __init__(
        self, url: str, token: str | None = None, app_name: str | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"sqreen-otel/{__version__}",
        }
        if token:
            self._headers["X-Api-Key"] = token
        if app_name:
            self._headers["X-App-Name"] = app_name
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
        )

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        count, body = encode_points(events)
        if not count:
            return SUCCESS
        return self._send(body)

    def _send(self, body: bytes) -> ExportOutcome:
        """POST one gzip-compressed batch and classify the answer."""
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            status = error.code
            if status in _RETRYABLE or status >= 500:
                return ExportOutcome(
                    ExportStatus.RETRY, retry_after(error.headers.get("Retry-After")), f"HTTP {status}"
                )
            return ExportOutcome(ExportStatus.PERMANENT, detail=f"HTTP {status}")
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            return ExportOutcome(ExportStatus.RETRY, detail=type(error).__name__)
        return SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: each batch used its own connection."""
