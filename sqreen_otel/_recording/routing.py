"""Where an event goes, so that none is lost silently.

An event is *on* a span in one of two ways, by ``SQREEN_EVENT_SIGNAL``: as one of its span
events (``span``, ``both``), or *attached* to it, kept off its events in a registry of ours
(``logs``, ``none``: the app's span exporters never see it). Either way it becomes final when
that span ends and our processor ships it with the span's request attributes.

1. The request's local-root SERVER span, while it is open.
2. With no request state (a background job, a CLI, a worker thread without copied context):
   the current span if it is recording.
3. Otherwise a short *carrier* span of our own (``sqreen.events``), marked with
   ``sqreen.carrier.reason``: ``late`` (the request span already ended: the carrier is its
   child and copies its request attributes), ``no_request``, ``unsampled`` (the current span
   is not recording), or ``evicted`` (pushed out by ``OTEL_SPAN_EVENT_COUNT_LIMIT``).
   ``SecurityEventSampler`` always records carriers; if the host's sampler drops one anyway,
   the event is counted in ``stats()["events_lost_unsampled"]`` and a warning is logged.
   When events are not span events (``logs``, ``none``) carriers are never sampled: the
   app's exporters skip them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TracerProvider

from sqreen_otel import _fork, _schema
from sqreen_otel._config import current_config
from sqreen_otel._http.request_context import REQUEST_CONTEXT_KEYS
from sqreen_otel._log import warn_once
from sqreen_otel._recording.live_event import LiveEvent
from sqreen_otel._recording.request_state import RequestState, environ_attributes
from sqreen_otel._scrubbing.scrubber import scrubber_for
from sqreen_otel._sdk_bridge import (
    add_event_if_open,
    carrier_tracer,
    event_limits,
    is_sdk_span,
    max_events,
    run_if_open,
    span_processors,
)
from sqreen_otel._stats import stats
from sqreen_otel._version import __version__

_provider: TracerProvider | None = None
UNSAMPLED_STATE = "sqreen_otel.unsampled_request"  # the environ key of a carrier-backed request

# Carriers kept open while a builder may still refine their event (``track_event`` outside a
# live request). They end when the builder is released, when ``flush()``/shutdown runs, or at
# the spool's next tick once older than ``MAX_OPEN_CARRIER_S``: deterministically, never only
# at garbage collection.
MAX_OPEN_CARRIER_S = 1.0
_open_carriers: dict[int, tuple[SdkSpan, float]] = {}
_carriers_lock = threading.Lock()


# Events attached to open spans without being span events: span id -> events, in order. An
# entry is added under the span's own lock while it is open and taken by our processor when
# the span ends (``take_attached``), so none is missed nor left behind.
_attached: dict[int, list[LiveEvent]] = {}
_MAX_ATTACHED_SPANS = 100_000  # bounds the registry if an instrumentation never ends its spans


def _reinit_lock() -> None:
    global _carriers_lock  # noqa: PLW0603 - replaced in a forked child
    _carriers_lock = threading.Lock()
    _open_carriers.clear()  # the parent's to end
    _attached.clear()  # the parent's spans


_fork.in_child(_reinit_lock)


def hold_open(carrier: SdkSpan) -> None:
    with _carriers_lock:
        _open_carriers[id(carrier)] = (carrier, time.monotonic())


def end_carrier(carrier: SdkSpan) -> None:
    """End a carrier kept open (once: a second call does nothing)."""
    with _carriers_lock:
        entry = _open_carriers.pop(id(carrier), None)
    if entry is not None:
        carrier.end()


def end_open_carriers(older_than: float | None = None) -> int:
    """End the carriers kept open (only those open for ``older_than`` seconds or more); how many."""
    now = time.monotonic()
    with _carriers_lock:
        due = [
            key
            for key, (_, opened) in _open_carriers.items()
            if older_than is None or now - opened >= older_than
        ]
        carriers = [_open_carriers.pop(key)[0] for key in due]
    for carrier in carriers:
        carrier.end()
    return len(carriers)


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


def _tracer_provider() -> TracerProvider:
    return _provider if _provider is not None else trace.get_tracer_provider()


def _tracer() -> trace.Tracer:
    return carrier_tracer(_tracer_provider(), "sqreen_otel", __version__)


def put_on(span: SdkSpan, event: LiveEvent) -> bool:
    """Put ``event`` on ``span`` if it is still open: as a span event, or attached (see above)."""
    event.place(span, event_limits(span))
    if current_config().events_on_spans:
        return add_event_if_open(span, event)
    span_id = span.get_span_context().span_id
    if len(_attached) >= _MAX_ATTACHED_SPANS and span_id not in _attached:
        _forget_oldest_attached()
    return run_if_open(span, lambda: _attached.setdefault(span_id, []).append(event))


def _forget_oldest_attached() -> None:
    """The registry is full of spans that never ended: their events cannot be shipped."""
    try:
        events = _attached.pop(next(iter(_attached)))
    except (StopIteration, KeyError, RuntimeError):  # emptied meanwhile
        return
    stats.add("events_lost_span_never_ended", len(events))
    warn_once(
        "span_never_ended",
        "Security events were attached to spans that never ended (an instrumentation that does "
        "not end its spans?); the oldest are dropped (events_lost_span_never_ended).",
    )


def take_attached(span_id: int) -> list[LiveEvent]:
    """The events attached to the span ``span_id`` (which is ending), in order; forgets them."""
    return _attached.pop(span_id, []) if _attached else []


def request_attributes(span: SdkSpan) -> dict[str, Any]:
    """The request span's attributes a late or rescued event needs for its default properties."""
    return {
        key: value
        for key, value in (span.attributes or {}).items()
        if key in _COPIED_KEYS or key.startswith((_schema.USER_PREFIX, _schema.TRAITS_PREFIX))
    }


def start_carrier(reason: str, parent: SpanContext | None, attributes: Mapping[str, Any]) -> SdkSpan | None:
    """A recording carrier span, child of ``parent`` (else a root linked to it); None if dropped."""
    # What we put on a span of ours is scrubbed like everything we add to the host's telemetry
    # (a request's query string, a user agent): the host's exporters may ship the carrier.
    values = scrubber_for(current_config()).scrub_attributes(attributes)
    values[_schema.CARRIER_REASON] = reason
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
    provider = _tracer_provider()
    if not isinstance(provider, SdkTracerProvider):
        stats.add("events_lost_no_sdk")
        warn_once(
            "lost_no_sdk",
            "Security event %r could not be recorded: no OpenTelemetry SDK tracer provider is set up "
            "(the global one is %s). Under opentelemetry-instrument this means its auto-configuration "
            "failed: see the 'Configuration of ... failed' or 'Failed to auto initialize' error above "
            "(for instance OTEL_TRACES_EXPORTER=otlp without its exporter package: pip install "
            "opentelemetry-exporter-otlp-proto-http and set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf). "
            "Otherwise set up the SDK, or pass tracer_provider= to sqreen_otel.configure().",
            event.name,
            type(provider).__name__,
        )
        return
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
    if is_sdk_span(current):
        if not _monitored(current):  # a provider without our processor: nobody would ship it
            return _on_carrier(event, "other_provider", current.get_span_context(), {})
        if put_on(current, event):  # type: ignore[arg-type]
            return True, None
        if _is_request_span(current) and current.end_time is not None:  # type: ignore[attr-defined]
            # An ended request span in an explicit ctx: a late event.
            return _on_carrier(event, "late", current.get_span_context(), request_attributes(current))  # type: ignore[arg-type]
    span_context = current.get_span_context()
    if span_context.is_valid:
        return _on_carrier(event, "unsampled", span_context, {})
    return _on_carrier(event, "no_request", None, {})


def _monitored(span: Span) -> bool:
    """Whether our processor is on the provider that started ``span`` (so it ships its events)."""
    chain = span_processors(span)
    if chain is None:
        return True  # not knowable: assume the usual case
    return any(getattr(processor, "ships_security_events", False) for processor in chain[1])


def _is_request_span(span: Span) -> bool:
    parent = getattr(span, "parent", None)
    return getattr(span, "kind", None) is SpanKind.SERVER and (parent is None or parent.is_remote)


def unsampled_request(environ: Mapping[str, Any], parent: SpanContext) -> RequestState | None:
    """The state of a request that no span records (its trace is not sampled, or it has no
    instrumentation): a carrier span of ours, with the request's fields from its environ,
    becomes its span. Started at the request's first security event, so a request that
    tracks nothing pays nothing; ended by the middleware when the request ends."""
    reason = "unsampled" if parent.is_valid else "no_request"
    if not parent.is_valid and isinstance(_tracer_provider(), SdkTracerProvider):
        _no_server_span()  # (without an SDK nothing records: _lost says so)
    carrier = start_carrier(
        reason, parent if parent.is_valid else None, environ_attributes(environ, current_config())
    )
    if carrier is None:
        return None
    state = RequestState(carrier)
    state.open()
    try:
        environ[UNSAMPLED_STATE] = state  # type: ignore[index]
    except TypeError:  # a read-only environ: the state ends with the context instead
        hold_open(carrier)
    stats.add(f"requests_on_carrier_{reason}")
    return state


def _no_server_span() -> None:
    """A request reached ``SqreenMiddleware`` with no span at all, not even an unsampled one: no
    HTTP server instrumentation is installed (events keep the request's fields from the WSGI
    environ; the app's traces miss the request)."""
    stats.add("requests_without_server_span")
    warn_once(
        "no_server_span",
        "Requests have no OpenTelemetry HTTP server span: no instrumentation of the web framework "
        "is installed. Security events still get the request's fields (from SqreenMiddleware), but "
        "the app's traces miss the requests. Install it: pip install 'sqreen-otel[flask]' (or "
        "'sqreen-otel[django]'), or wrap a plain WSGI app in OpenTelemetryMiddleware.",
    )


def end_unsampled_request(environ: Mapping[str, Any]) -> None:
    """The request ends: end its carrier, if its events needed one."""
    state = environ.get(UNSAMPLED_STATE)
    if isinstance(state, RequestState):
        state.close()
        state.span.end()


def _on_carrier(
    event: LiveEvent, reason: str, parent: SpanContext | None, attributes: Mapping[str, Any]
) -> tuple[bool, SdkSpan | None]:
    carrier = start_carrier(reason, parent, attributes)
    if carrier is None or not put_on(carrier, event):
        _lost(event)
        return False, None
    stats.add(f"events_on_carrier_{reason}")
    return True, carrier


def rescue_evicted(state: RequestState, attached: Sequence[LiveEvent]) -> None:
    """Re-emit the span events the span's event limit pushed out, on a carrier (at span end);
    ``attached`` were never span events."""
    if not state.events:
        return
    present = {id(event) for event in state.span.events}
    present.update(id(event) for event in attached)
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
