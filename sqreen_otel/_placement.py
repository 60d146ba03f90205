"""Where an event goes, so that none is lost silently.

1. The request's local-root SERVER span, while it is open.
2. With no request state (a background job, a CLI, a worker thread without copied context):
   the current span if it is recording.
3. Otherwise a short *carrier* span of our own (``sqreen.events``), marked with
   ``sqreen.carrier.reason``: ``late`` (the request span already ended: the carrier is its
   child and copies its request attributes), ``no_request``, ``unsampled`` (the current span
   is not recording), or ``evicted`` (pushed out by ``OTEL_SPAN_EVENT_COUNT_LIMIT``).
   ``SecurityEventSampler`` always records carriers; if the host's sampler drops one anyway,
   the event is counted in ``stats()["events_lost_unsampled"]`` and a warning is logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TracerProvider

from sqreen_otel import _schema
from sqreen_otel._events import LiveEvent
from sqreen_otel._log import warn_once
from sqreen_otel._request_context import REQUEST_CONTEXT_KEYS
from sqreen_otel._sdk_bridge import add_event_if_open, event_limits, is_sdk_span, max_events
from sqreen_otel._state import RequestState
from sqreen_otel._stats import stats
from sqreen_otel._version import __version__

_provider: TracerProvider | None = None

_COPIED_KEYS = REQUEST_CONTEXT_KEYS | {
    _schema.CLIENT_IP_SOURCE,
    _schema.NETWORK_PEER_ADDRESS,
    _schema.USER_ID,
    _schema.USER_EMAIL,
    _schema.USER_NAME,
}


def use_provider(provider: TracerProvider | None) -> None:
    """Start carrier spans from ``provider`` (the one our processor is on); None: the global one."""
    global _provider  # noqa: PLW0603 - set once by configure()
    _provider = provider


def _tracer() -> trace.Tracer:
    provider = _provider if _provider is not None else trace.get_tracer_provider()
    return provider.get_tracer("sqreen_otel", __version__)


def put_on(span: SdkSpan, event: LiveEvent) -> bool:
    """Put ``event`` on ``span`` if it is still open."""
    event.place(span, event_limits(span))
    return add_event_if_open(span, event)


def request_attributes(span: SdkSpan) -> dict[str, Any]:
    """The request span's attributes a late or rescued event needs for its default properties."""
    return {
        key: value
        for key, value in (span.attributes or {}).items()
        if key in _COPIED_KEYS or key.startswith((_schema.USER_PREFIX, _schema.TRAITS_PREFIX))
    }


def start_carrier(reason: str, parent: SpanContext | None, attributes: Mapping[str, Any]) -> SdkSpan | None:
    """A recording carrier span, child of ``parent`` (else a root linked to it); None if dropped."""
    values = {**attributes, _schema.CARRIER_REASON: reason}
    tracer = _tracer()
    if parent is not None and parent.is_valid:
        ctx = trace.set_span_in_context(NonRecordingSpan(parent), context.Context())
        span = tracer.start_span(_schema.CARRIER_SPAN_NAME, ctx, SpanKind.INTERNAL, values)
        if is_sdk_span(span) and span.is_recording():
            return span  # type: ignore[return-value]
        # The host's sampler dropped a child of an unsampled trace: try a root linked to it.
        links: Sequence[Link] = (Link(parent),)
    else:
        links = ()
    span = tracer.start_span(_schema.CARRIER_SPAN_NAME, context.Context(), SpanKind.INTERNAL, values, links)
    if is_sdk_span(span) and span.is_recording():
        return span  # type: ignore[return-value]
    return None


def _lost(event: LiveEvent) -> None:
    stats.add("events_lost_unsampled")
    warn_once(
        "lost_unsampled",
        "Security event %r could not be recorded: the tracer provider's sampler dropped its span. "
        "Wrap the sampler in sqreen_otel.SecurityEventSampler (sqreen_otel.configure() does it).",
        event.name,
    )


def place(state: RequestState | None, current: Span, event: LiveEvent) -> tuple[bool, SdkSpan | None]:
    """Put ``event`` somewhere it will be exported.

    Returns (recorded, carrier): ``carrier`` is an open carrier span the caller must end once
    the event is fully described (None when the event went on a live span, or was lost).
    """
    if state is not None:
        if put_on(state.span, event):
            state.events.append(event)
            return True, None
        return _on_carrier(event, "late", state.span.get_span_context(), request_attributes(state.span))
    if is_sdk_span(current) and put_on(current, event):  # type: ignore[arg-type]
        return True, None
    span_context = current.get_span_context()
    if span_context.is_valid:
        return _on_carrier(event, "unsampled", span_context, {})
    return _on_carrier(event, "no_request", None, {})


def _on_carrier(
    event: LiveEvent, reason: str, parent: SpanContext | None, attributes: Mapping[str, Any]
) -> tuple[bool, SdkSpan | None]:
    carrier = start_carrier(reason, parent, attributes)
    if carrier is None or not put_on(carrier, event):
        _lost(event)
        return False, None
    stats.add(f"events_on_carrier_{reason}")
    return True, carrier


def rescue_evicted(state: RequestState) -> None:
    """Re-emit the events the span's event limit pushed out, on a carrier (called at span end)."""
    if not state.events:
        return
    present = {id(event) for event in state.span.events}
    evicted = [event for event in state.events if id(event) not in present]
    if not evicted:
        return
    stats.add("events_evicted", len(evicted))
    warn_once(
        "evicted",
        "The request span hit OTEL_SPAN_EVENT_COUNT_LIMIT and dropped %d security event(s); "
        "they were re-emitted on a 'sqreen.events' carrier span.",
        len(evicted),
    )
    chunk = max_events(state.span) or len(evicted)  # carriers have the same per-span limit
    attributes = request_attributes(state.span)
    for start in range(0, len(evicted), chunk):
        batch = evicted[start : start + chunk]
        carrier = start_carrier("evicted", state.span.get_span_context(), attributes)
        if carrier is None:
            for event in batch:
                _lost(event)
            continue
        for event in batch:
            event.finalize()  # already final: its request span is ending
            add_event_if_open(carrier, event)
        carrier.end()
