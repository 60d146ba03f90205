"""Security events read back from exported spans: what exporters ship.

One ``SecurityEvent`` per event we recorded (recognised by its ``sqreen.event.type``
attribute), with its default properties derived from the span's HTTP attributes
(``_request_context``) and, for a request span, the user ``identify()`` associated with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan

from sqreen_otel import _schema
from sqreen_otel._request_context import RequestContext, request_context
from sqreen_otel._sdk_bridge import readable, span_attributes


class SecurityEvent(NamedTuple):
    name: str
    event_type: str
    timestamp_ns: int
    properties: dict[str, Any]
    user_identifiers: dict[str, Any]
    request: RequestContext  # shared by the events of one span
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits


def _strip(attributes: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    size = len(prefix)
    return {key[size:]: value for key, value in attributes.items() if key.startswith(prefix)}


def security_events(span: ReadableSpan) -> Iterator[SecurityEvent]:
    """The security events a span carries, in order."""
    context = request_context(span_attributes(span))
    trace_id = f"{span.context.trace_id:032x}" if span.context else "0" * 32
    span_id = f"{span.context.span_id:016x}" if span.context else "0" * 16
    for event in span.events:
        attributes = readable(event.attributes)
        event_type = attributes.get(_schema.EVENT_TYPE)
        if not isinstance(event_type, str):
            continue
        yield SecurityEvent(
            name=event.name,
            event_type=event_type,
            timestamp_ns=event.timestamp,
            properties=_strip(attributes, _schema.PROPERTIES_PREFIX),
            user_identifiers=_strip(attributes, _schema.USER_PREFIX),
            request=context,
            trace_id=trace_id,
            span_id=span_id,
        )


def events_of(spans: Iterable[ReadableSpan]) -> list[SecurityEvent]:
    return [event for span in spans for event in security_events(span)]


def iso_time(timestamp_ns: int) -> str:
    """``2026-01-02T03:04:05.678Z`` (UTC, milliseconds)."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1_000_000:03d}Z"
