"""``ScrubbingSpanExporter``: the same scrubbing in front of any span exporter.

Our pipeline puts it in front of every exporter it ships to. It is public so the app can put
it in front of its own exporters too: the app's traces carry the same request attributes
(``url.query``, captured headers...) and, on request spans, our security events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link
from opentelemetry.trace.status import Status

from sqreen_otel import _schema
from sqreen_otel._config import current_config
from sqreen_otel._recording.live_event import LiveEvent
from sqreen_otel._scrubbing.scrubber import Scrubber, scrubber_for
from sqreen_otel._sdk_bridge import attributes_copy, bounded_list, span_attributes
from sqreen_otel._shipping.event_model import EventExporter, event_attributes, scrubbed_events
from sqreen_otel._shipping.export_result import ExportOutcome, export_outcome

__all__ = ["ScrubbingSpanExporter"]


def _scrubbed(scrubber: Scrubber, event: Event, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """An event's attributes scrubbed: ours were, by this scrubber, when first read."""
    if isinstance(event, LiveEvent) and event.scrubber is scrubber:
        return dict(attributes)
    return scrubber.scrub_attributes(attributes)


def with_events(span: ReadableSpan, events: Sequence[Event]) -> ReadableSpan:
    """``span`` carrying ``events`` (our events kept off its span events) for our own pipeline.

    A carrier of ours that the app never exports (``SQREEN_EVENT_SIGNAL`` without ``span``)
    lends its events its parent's ids: they correlate with the request span the app exported.
    """
    context = span.context
    attributes = span_attributes(span)
    if span.parent is not None and span.parent.is_valid and _schema.CARRIER_REASON in attributes:
        context = span.parent
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=list(events),
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def scrub_span(
    scrubber: Scrubber, span: ReadableSpan, *, ours: bool = False, resource: Resource | None = None
) -> ReadableSpan:
    """A scrubbed copy of ``span`` (the original, shared with other processors, is untouched).

    ``ours``: the copy is for our own exporter, so our events carry what our exporters ship
    (user identifiers kept off host spans included); otherwise exactly what is on the span.
    ``resource``: the span's resource, already scrubbed.
    """
    text = scrubber.scrub_text
    attributes_of = event_attributes if ours else _host_attributes
    events = bounded_list(
        [
            Event(
                text(event.name),
                attributes_copy(
                    _scrubbed(scrubber, event, attributes_of(event)),
                    getattr(event, "dropped_attributes", 0),
                ),
                event.timestamp,
            )
            for event in span.events
        ],
        span.dropped_events,
    )
    links = bounded_list(
        [
            Link(
                link.context,
                attributes_copy(scrubber.scrub_attributes(link.attributes), link.dropped_attributes),
            )
            for link in span.links
        ],
        span.dropped_links,
    )
    status = span.status
    if status.description:
        status = Status(status.status_code, text(status.description))
    return ReadableSpan(
        name=text(span.name),
        context=span.context,
        parent=span.parent,
        resource=resource if resource is not None else span.resource,
        attributes=attributes_copy(scrubber.scrub_attributes(span_attributes(span)), span.dropped_attributes),
        events=events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _host_attributes(event: Event) -> Mapping[str, Any]:
    return event.attributes or {}


class ScrubbingSpanExporter(SpanExporter):
    """Scrubs copies of the spans (rules: ``SQREEN_STRIP_SENSITIVE_*``), then exports them.

    ``ScrubbingSpanExporter(OTLPSpanExporter())`` in the app's own pipeline keeps secrets out
    of its traces as well. The rules are read from the settings in force when it is created.
    """

    def __init__(
        self, wrapped: SpanExporter, scrubber: Scrubber | None = None, *, ours: bool = False
    ) -> None:
        self.wrapped = wrapped
        self.scrubber = scrubber if scrubber is not None else scrubber_for(current_config())
        self._ours = ours  # our own pipeline's (see scrub_span)
        self._resources: dict[int, tuple[Resource, Resource]] = {}  # id -> (original, scrubbed)

    def _resource(self, resource: Resource) -> Resource:
        """The resource with its attributes scrubbed (``process.command_args``...), once per resource."""
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            if len(self._resources) > 64:
                self._resources.clear()
            scrubbed = Resource(self.scrubber.scrub_attributes(resource.attributes), resource.schema_url)
            cached = self._resources[id(resource)] = (resource, scrubbed)
        return cached[1]

    def scrub(self, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        if not self.scrubber.active:
            return list(spans)
        return [
            scrub_span(self.scrubber, span, ours=self._ours, resource=self._resource(span.resource))
            for span in spans
        ]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.export_batch(spans).result

    def export_batch(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
        if isinstance(self.wrapped, EventExporter):
            # An exporter of the event model (http, local, console): the scrubbed events it
            # ships, not whole span copies it would only read back.
            return self.wrapped.export_events(scrubbed_events(spans, self.scrubber))
        return export_outcome(self.wrapped, self.scrub(spans))

    def shutdown(self) -> None:
        self.wrapped.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.wrapped.force_flush(timeout_millis)
