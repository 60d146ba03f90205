"""Security events as OpenTelemetry log records through a ``LoggerProvider`` (the app's).

``SQREEN_EVENT_SIGNAL=logs`` (or ``both``): the log-based form of events OpenTelemetry now
recommends (OTEP 4430): one log record per event with ``event_name`` set, correlated to its
request span by the record's context, carrying the scrubbed event attributes and its request's
default properties (the same attributes as the ``otlp`` exporter's records). The app's own
log pipeline (``OTEL_LOGS_EXPORTER``, its processors) then carries them wherever it sends logs.

Emitted from our pipeline's worker thread, never the request thread, about
``SQREEN_SPOOL_INTERVAL`` after the request span ended (an event is final only then).
Without a ``LoggerProvider`` set (``set_logger_provider``, or ``opentelemetry-instrument``
with a logs exporter) records would vanish into the API's no-op: the events are then counted
as dropped for this destination (``flush()`` returns False) and an error says how to fix it;
they still reach our own exporters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry._logs import Logger, LoggerProvider, LogRecord, SeverityNumber, get_logger_provider

from sqreen_otel._log import log_every
from sqreen_otel._sdk_bridge import logger_provider_is_set
from sqreen_otel._shipping.event_model import EventExporter, SecurityEvent, log_attributes
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome, ExportStatus
from sqreen_otel._version import __version__

__all__ = ["LoggerProviderEventExporter"]

_NO_PROVIDER = ExportOutcome(ExportStatus.PERMANENT, detail="no LoggerProvider is set")
_configured: LoggerProvider | None = None  # configure(logger_provider=...), else the global one


def use_logger_provider(provider: LoggerProvider | None) -> None:
    """Emit through ``provider`` from now on (None: the global ``LoggerProvider``)."""
    global _configured  # noqa: PLW0603 - set by configure()
    _configured = provider


class LoggerProviderEventExporter(EventExporter):
    """Emits each event as a log record through ``provider`` (default: the one given to
    ``configure(logger_provider=...)``, else the global one)."""

    max_export_seconds = 30.0  # in memory: no lease to outlive, a bound for the pipeline's logs

    def __init__(self, provider: LoggerProvider | None = None) -> None:
        self._provider = provider
        self._logger: Logger | None = None

    @property
    def destination(self) -> str:
        return "logger-provider"

    def _get_logger(self) -> Logger | None:
        if self._logger is None:
            provider = self._provider or _configured
            if provider is None:
                if not logger_provider_is_set():
                    return None
                provider = get_logger_provider()
            self._logger = provider.get_logger("sqreen_otel", __version__)
        return self._logger

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        if not events:
            return SUCCESS
        logger = self._get_logger()
        if logger is None:
            log_every(
                "no_logger_provider",
                60.0,
                logging.ERROR,
                "sqreen_otel: SQREEN_EVENT_SIGNAL asks for log records but the app has no "
                "LoggerProvider (set one with opentelemetry._logs.set_logger_provider, or run under "
                "opentelemetry-instrument with OTEL_LOGS_EXPORTER set); %d security events were not "
                "logged (they still reach sqreen-otel's own exporters).",
                len(events),
            )
            return _NO_PROVIDER
        observed = time.time_ns()
        for event in events:
            logger.emit(_record(event, observed))
        return SUCCESS


def _record(event: SecurityEvent, observed_ns: int) -> LogRecord:
    # The ids correlate the record with its request span; whether that trace was sampled is
    # not known here, so the flags say nothing (the default).
    span_context = trace.SpanContext(int(event.trace_id, 16), int(event.span_id, 16), is_remote=False)
    return LogRecord(
        timestamp=event.timestamp_ns,
        observed_timestamp=observed_ns,
        context=trace.set_span_in_context(trace.NonRecordingSpan(span_context)),
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        attributes=log_attributes(event),
        event_name=event.name,
    )
