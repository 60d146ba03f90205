"""``otlp``: security events as OTLP **log records**, over OTLP/HTTP, to an OpenTelemetry Collector.

Each event is one log record with ``event_name`` set (the form OpenTelemetry now recommends
for events), correlated to its span by ``trace_id``/``span_id``, with the scrubbed event
attributes (``sqreen.event.type``, ``sqreen.properties.*``, ``sqreen.user.*``) and its request's
(``client.address``, ``user_agent.original``, ``http.request.method``, ``url.path``,
``http.route``, ``url.query``). Log records, not spans: the collector never receives a second
copy of the app's spans with the same ids.

Configured by the standard variables, logs-specific first: ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``
(used as is) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/logs`` (default
``http://localhost:4318/v1/logs``), ``..._HEADERS``, ``..._TIMEOUT`` (seconds, as the Python SDK
reads it), ``..._COMPRESSION`` (``gzip``), ``..._CERTIFICATE``, ``..._CLIENT_CERTIFICATE`` and
``..._CLIENT_KEY``. ``SQREEN_OTLP_ENDPOINT`` (the ``endpoint`` argument) overrides the endpoint.

``ScrubbingOTLPSpanExporter`` is something else: the ``OTEL_TRACES_EXPORTER=sqreen`` entry
point, the official span exporter behind our scrubbing, for the app's own traces.
"""

from __future__ import annotations

import gzip
import math
import os
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from sqreen_otel._log import warn_once
from sqreen_otel._shipping.event_model import SecurityEvent, log_attributes
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome
from sqreen_otel._shipping.scrubbing_exporter import ScrubbingSpanExporter
from sqreen_otel._version import __version__
from sqreen_otel.exporters._transport import HttpEventExporter, HttpTransport

__all__ = ["OTLPEventExporter", "OTLPSpanExporter", "ScrubbingOTLPSpanExporter", "encode_logs"]

_SEVERITY_INFO = 9
DEFAULT_ENDPOINT = "http://localhost:4318/v1/logs"
DEFAULT_TIMEOUT_S = 10.0


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value]))
    if isinstance(value, dict):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value.values()]))
    return AnyValue(string_value=str(value))


def _attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in values.items() if value is not None]


def _record(event: SecurityEvent, observed_ns: int) -> LogRecord:
    return LogRecord(
        time_unix_nano=event.timestamp_ns,
        observed_time_unix_nano=observed_ns,
        severity_number=_SEVERITY_INFO,  # type: ignore[arg-type]
        severity_text="INFO",
        event_name=event.name,
        attributes=_attributes(log_attributes(event)),
        trace_id=bytes.fromhex(event.trace_id),
        span_id=bytes.fromhex(event.span_id),
    )


def encode_logs(events: Sequence[SecurityEvent], service: str | None, observed_ns: int) -> bytes:
    """The OTLP/protobuf ``ExportLogsServiceRequest`` for ``events`` (one resource, one scope)."""
    resource = Resource(attributes=_attributes({"service.name": service or "unknown_service"}))
    scope = InstrumentationScope(name="sqreen_otel", version=__version__)
    records = [_record(event, observed_ns) for event in events]
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(resource=resource, scope_logs=[ScopeLogs(scope=scope, log_records=records)])
        ]
    )
    return bytes(request.SerializeToString())


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    """``OTEL_EXPORTER_OTLP_LOGS_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return environ.get(f"OTEL_EXPORTER_OTLP_LOGS_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}")


def endpoint_from_environment(environ: Mapping[str, str]) -> str:
    explicit = environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    if explicit:
        return explicit.strip()
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.strip().rstrip("/") + "/v1/logs"
    return DEFAULT_ENDPOINT


def timeout_from_environment(environ: Mapping[str, str]) -> float:
    """``OTEL_EXPORTER_OTLP_[LOGS_]TIMEOUT`` in seconds (as the Python SDK reads it); a value that
    is not a positive finite number of at most 300 s is ignored with a warning: 10 s."""
    raw = _env("TIMEOUT", environ)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw.strip())
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 300:  # also false for NaN
        warn_once(
            "otlp_timeout",
            "Ignoring OTEL_EXPORTER_OTLP_TIMEOUT: not a number of seconds in (0, 300]; using 10.",
        )
        return DEFAULT_TIMEOUT_S
    return seconds


def headers_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``key=value,key2=value2`` with URL-encoded values (the OTLP exporter specification)."""
    headers: dict[str, str] = {}
    for item in (_env("HEADERS", environ) or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return headers


def _ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=_env("CERTIFICATE", environ) or None)
    client_certificate = _env("CLIENT_CERTIFICATE", environ)
    if client_certificate:
        context.load_cert_chain(client_certificate, _env("CLIENT_KEY", environ) or None)
    return context


class OTLPEventExporter(HttpEventExporter):
    """Security events as OTLP log records over OTLP/HTTP (see the module docstring)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: str | None = None,
        service: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.endpoint = endpoint or endpoint_from_environment(env)
        self.service = service
        self.compression = (compression or _env("COMPRESSION", env) or "none").strip().lower()
        request_headers = {
            **headers_from_environment(env),
            **(headers or {}),
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"sqreen-otel/{__version__}",
        }
        if self.compression == "gzip":
            request_headers["Content-Encoding"] = "gzip"
        seconds = timeout if timeout is not None else timeout_from_environment(env)
        context = _ssl_context(env) if self.endpoint.startswith("https:") else None
        self._use(HttpTransport(self.endpoint, request_headers, seconds, context))

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        if not events:
            return SUCCESS
        body = encode_logs(events, self.service, time.time_ns())
        if self.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        return self._transport.post(body)


class ScrubbingOTLPSpanExporter(ScrubbingSpanExporter):
    """``OTEL_TRACES_EXPORTER=sqreen``: scrubbed OTLP/HTTP for a stock OpenTelemetry pipeline.

    Keyword arguments (from declarative configuration, for instance) go to ``OTLPSpanExporter``.
    """

    def __init__(self, **otlp_arguments: Any) -> None:
        super().__init__(OTLPSpanExporter(**otlp_arguments))
