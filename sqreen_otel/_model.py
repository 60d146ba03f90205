"""Security events read back from exported spans: what exporters ship.

One ``SecurityEvent`` per event we recorded (recognised by its ``sqreen.event.type``
attribute), with its default properties derived from the span's HTTP attributes
(``_request_context``) and, for a request span, the user ``identify()`` associated with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan

from sqreen_otel import _schema
from sqreen_otel._request_context import RequestContext, request_context


class SecurityEvent(NamedTuple):
    name: str
    event_type: str
    timestamp_ns: int
    properties: dict[str, Any]
    user_identifiers: dict[str, Any]
    request: RequestContext
    trace_id: int
    span_id: int


def _strip(attributes: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    size = len(prefix)
    return {key[size:]: value for key, value in attributes.items() if key.startswith(prefix)}


def security_events(span: ReadableSpan) -> Iterator[SecurityEvent]:
    """The security events a span carries, in order."""
    span_attributes = span.attributes or {}
    context = request_context(span_attributes)
    for event in span.events:
        attributes = event.attributes or {}
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
            trace_id=span.context.trace_id if span.context else 0,
            span_id=span.context.span_id if span.context else 0,
        )
