"""Security events read back from spans, scrubbed: what our event exporters ship.

One ``SecurityEvent`` per event we recorded (recognised by its ``sqreen.event.type``
attribute), with its default properties derived from the span's HTTP attributes
(``request_context``). There is one way to get them, ``scrubbed_events``, and it scrubs: the
event and request attributes go through the same ``Scrubber.scrub_attributes`` as the spans
our OTLP path ships, and the event is built from the result. ``EventExporter`` is the base of
every exporter of this model (local store, http, console), so none can ship an unscrubbed one.
"""

from __future__ import annotations

import abc
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sqreen_otel import _schema
from sqreen_otel._config import MAX_VALUE_LENGTH, current_config
from sqreen_otel._http.request_context import RequestContext, request_fields
from sqreen_otel._recording.live_event import LiveEvent
from sqreen_otel._scrubbing.scrubber import Scrubber, scrubber_for
from sqreen_otel._sdk_bridge import span_attributes
from sqreen_otel._shipping.export_result import ExportOutcome


class SecurityEvent(NamedTuple):
    name: str
    event_type: str
    timestamp_ns: int
    properties: dict[str, Any]
    user_identifiers: dict[str, Any]
    request: RequestContext  # shared by the events of one span
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    key: str = ""  # unique per event, the same on every copy (``sqreen.event.id``): for de-duplication


def log_attributes(event: SecurityEvent) -> dict[str, Any]:
    """The attributes of an event as one log record (OTLP and the app's ``LoggerProvider``):
    the event's, and its request's default properties (a log record stands alone)."""
    request = event.request
    values: dict[str, Any] = {_schema.EVENT_TYPE: event.event_type}
    values.update({_schema.PROPERTIES_PREFIX + key: value for key, value in event.properties.items()})
    values.update({_schema.USER_PREFIX + key: value for key, value in event.user_identifiers.items()})
    values.update(
        {
            _schema.CLIENT_ADDRESS: request.client_ip,
            "user_agent.original": request.user_agent,
            "http.request.method": request.method,
            "url.path": request.path,
            "http.route": request.route,
            "url.query": urllib.parse.urlencode(request.parameters, doseq=True) or None,
            _schema.EVENT_ID: event.key or None,
        }
    )
    return {  # a log record's values keep within our value limit (a long query string)
        key: value[:MAX_VALUE_LENGTH] if isinstance(value, str) else value
        for key, value in values.items()
        if value is not None
    }


def event_attributes(event: Event) -> Mapping[str, Any]:
    """What our exporters ship of an event (ours may carry user identifiers kept off host spans)."""
    if isinstance(event, LiveEvent):
        return event.export_attributes()
    return event.attributes or {}


def scrubbed_events(spans: Iterable[ReadableSpan], scrubber: Scrubber) -> list[SecurityEvent]:
    """The security events the spans carry, in order, scrubbed by ``scrubber``."""
    return [event for span in spans for event in _span_events(span, scrubber)]


def _span_events(span: ReadableSpan, scrubber: Scrubber) -> Iterator[SecurityEvent]:
    events = [(event, event_attributes(event)) for event in span.events]
    events = [(event, attributes) for event, attributes in events if _schema.EVENT_TYPE in attributes]
    if not events:
        return
    context = scrubber.scrub_request(request_fields(span_attributes(span)))
    trace_id = f"{span.context.trace_id:032x}" if span.context else "0" * 32
    span_id = f"{span.context.span_id:016x}" if span.context else "0" * 16
    for index, (event, raw) in enumerate(events):
        event_type = raw.get(_schema.EVENT_TYPE)
        if not isinstance(event_type, str):
            continue
        event_id = raw.get(_schema.EVENT_ID)
        if not isinstance(event_id, str):  # an event of another writer: its place in the span
            event_id = f"{trace_id}:{span_id}:{index}:{event.timestamp}:{event.name}"
        scrubbed = isinstance(event, LiveEvent) and event.scrubber is scrubber
        properties, identifiers = scrubber.scrub_event(raw, scrubbed=scrubbed)
        yield SecurityEvent(
            name=scrubber.scrub_text(event.name),
            event_type=event_type,
            timestamp_ns=event.timestamp,
            properties=properties,
            user_identifiers=identifiers,
            request=context,
            trace_id=trace_id,
            span_id=span_id,
            key=event_id,
        )


class EventExporter(SpanExporter, abc.ABC):
    """An exporter of scrubbed ``SecurityEvent``s; subclasses implement ``export_events``.

    Handed spans directly (``export``), it scrubs them with the settings in force; in our
    pipeline, ``ScrubbingSpanExporter`` hands it the events its own scrubber produced.
    """

    #: The longest one ``export_events`` call may take, in seconds: a drainer's lease on the
    #: queue outlives it, so no other process sends the same batch meanwhile.
    max_export_seconds: float = 60.0

    @property
    def destination(self) -> str:
        """Where the events go, credentials included: apps sharing an event store share a queue
        only with apps of the same service sending to the same destination (the store keeps
        only a hash of it)."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    @abc.abstractmethod
    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        """Ship already-scrubbed events."""

    def export_batch(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
        return self.export_events(scrubbed_events(spans, scrubber_for(current_config())))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.export_batch(spans).result


def iso_time(timestamp_ns: int) -> str:
    """``2026-01-02T03:04:05.678Z`` (UTC, milliseconds)."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1_000_000:03d}Z"
