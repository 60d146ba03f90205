"""The only place that touches OpenTelemetry SDK internals.

Each is checked by tests/test_sdk_bridge.py, run against the oldest and the newest SDK of
pyproject's range (``make test``) and releases in between (``make compat``), so an SDK that
moves one fails loudly in CI instead of silently losing events. Where an SDK of the range
lacks one, the best available path is here:

* ``ON_ENDING``: SDK 1.40 added the ``_on_ending`` hook (called, for every processor, before
  any ``on_end``). Without it, ``install_processor`` puts our processor *first*, and it does
  its span-end work at the start of its ``on_end``: the span it gets there shares its
  attributes and events with the ending span, and no other processor has seen it yet.

* ``add_event_if_open`` / ``run_if_open``: put an event object on a span (or run a step),
  atomically with the span's own "has it ended?" check (the public ``add_event`` would freeze
  our attributes on the spot, and ``_add_event`` logs a warning into the host's logs when the
  span just ended).
* ``span_processors``: the processors of the provider that started a span (its
  ``_span_processor``, a multi-processor), to tell whether ours is among them.
* ``logger_provider_is_set``: whether the app set a global ``LoggerProvider`` (the API's
  ``get_logger_provider`` hands out a silent proxy until then).
* ``event_limits``: the span's limits for event attributes, so our events get the same
  bounds the SDK would apply.
* ``set_attributes_while_ending``: the specification's ``OnEnding`` lets a processor still
  change the span; the Python SDK freezes its attributes just before calling
  ``_on_ending``. Used to write the resolved client IP once the instrumentation is done
  with the span (Flask and Django re-set their start attributes after the span started).
* ``has_events``: whether a span holds events, without the copy ``span.events`` makes.
* ``set_event_timestamp``: an event's time changed after creation (``with_timestamp``);
  ``Event`` keeps it in ``_timestamp`` and has no setter.
* ``bounded_list``: the SDK's ``BoundedList`` (events, links of a span copy) with a dropped count.
* ``max_events``: the span's event limit (``OTEL_SPAN_EVENT_COUNT_LIMIT``); the SDK evicts the
  oldest past it, which ``routing.rescue_evicted`` detects with the public ``span.events``.
* ``attributes_copy``: attribute containers for scrubbed span copies, without re-cleaning.
* ``readable``: the plain dict behind ``BoundedAttributes``, for read-only iteration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
)
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Span, Tracer, TracerProvider

_DEFAULT_LIMITS = SpanLimits()


def is_sdk_span(span: Span) -> bool:
    return isinstance(span, SdkSpan)


def add_event_if_open(span: SdkSpan, event: Event) -> bool:
    """Append ``event`` to ``span`` unless it has ended; True if it was appended."""
    events: Any = span._events  # a BoundedList (typed as Sequence upstream)
    return run_if_open(span, functools.partial(events.append, event))


def run_if_open(span: SdkSpan, step: Callable[[], object]) -> bool:
    """Run ``step`` unless ``span`` has ended, under the lock its ``end()`` takes; True if run.

    What ``step`` records is seen by every ``_on_ending``/``on_end`` of the span.
    """
    with span._lock:
        if span._end_time is not None:
            return False
        step()
        return True


def span_processors(span: object) -> tuple[object, tuple[object, ...]] | None:
    """(the span's processor chain, the processors in it); None if the SDK hides it."""
    chain = getattr(span, "_span_processor", None)
    processors = getattr(chain, "_span_processors", None)
    if chain is None or not isinstance(processors, tuple):
        return None
    return chain, processors


def logger_provider_is_set() -> bool:
    """Whether a global ``LoggerProvider`` was set (else log records go nowhere, silently)."""
    from opentelemetry._logs import _internal as logs_api

    return getattr(logs_api, "_LOGGER_PROVIDER", None) is not None


def set_attributes_while_ending(span: SdkSpan, attributes: Mapping[str, str | tuple[str, ...]]) -> None:
    """Set already-clean string attributes on a span in ``_on_ending`` (before any ``on_end``)."""
    _set_raw(span._attributes, attributes)  # a BoundedAttributes, frozen by Span.end() (SDK 1.43+)


def _set_raw(store: Any, values: Mapping[str, Any]) -> None:
    """Set already-valid values in a ``BoundedAttributes``, frozen or not, without re-cleaning."""
    with store._lock:
        locked_setter = getattr(store, "_setitem_locked", None)  # API 1.43+
        for key, value in values.items():
            if locked_setter is not None:
                locked_setter(key, value)
            else:  # before 1.43: no locked setter (and nothing frozen)
                store._dict[key] = value


def attributes_copy(values: dict[str, Any], dropped: int) -> Mapping[str, Any]:
    """Span/event attributes for a copy, from values that are already valid attribute values.

    A plain dict when nothing was dropped (``ReadableSpan`` wraps it read-only); else a
    ``BoundedAttributes`` carrying the original's dropped count, filled without the SDK's
    constructor, which would clean every value again (the costly part of copying a span).
    """
    if not dropped:
        return values
    attributes = BoundedAttributes(None, None, immutable=False)
    store: Any = attributes
    _set_raw(store, values)
    store._immutable = True
    attributes.dropped = dropped
    return attributes


def readable(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only view of attributes for fast iteration (``BoundedAttributes`` iterates
    through the generic ``Mapping`` mixin, a Python call per key)."""
    if attributes is None:
        return {}
    plain = getattr(attributes, "_dict", None)
    return plain if isinstance(plain, dict) else attributes


def span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes for read-only iteration (``span.attributes`` wraps them in a proxy)."""
    return readable(getattr(span, "_attributes", None) or span.attributes)


def set_event_timestamp(event: Event, timestamp_ns: int) -> None:
    """Change an event's time (``Event`` sets it once, in its constructor)."""
    event._timestamp = timestamp_ns


def bounded_list(items: list[Any], dropped: int) -> Any:
    """A ``BoundedList`` holding ``items`` and reporting ``dropped`` (span copies keep the count)."""
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded


def has_events(span: ReadableSpan) -> bool:
    """Whether the span holds any event, without copying them (``span.events`` copies)."""
    events = getattr(span, "_events", None)
    return bool(events) if events is not None else bool(span.events)


def max_events(span: SdkSpan) -> int | None:
    """How many events ``span`` holds before the SDK evicts the oldest (None: unlimited)."""
    limit = getattr(span, "_limits", _DEFAULT_LIMITS).max_events
    return limit if isinstance(limit, int) and limit > 0 else None


def event_limits(span: SdkSpan) -> tuple[int | None, int | None]:
    """(max attributes per event, max attribute value length) in force for ``span``."""
    limits = getattr(span, "_limits", _DEFAULT_LIMITS)
    return limits.max_event_attributes, limits.max_attribute_length


def carrier_tracer(provider: TracerProvider, name: str, version: str) -> Tracer:
    """A tracer of ``provider`` whose sampler (only this tracer's) keeps spans recording.

    SDK tracers capture the provider's sampler when they are created; ours gets it wrapped in
    ``SecurityEventSampler``, so the host's own sampler is never replaced.
    """
    from sqreen_otel._recording.sampler import SecurityEventSampler

    tracer = provider.get_tracer(name, version)
    sampler = getattr(tracer, "sampler", None)
    if isinstance(sampler, Sampler) and not isinstance(sampler, SecurityEventSampler):
        tracer.sampler = SecurityEventSampler(sampler)  # type: ignore[attr-defined]
    return tracer


ON_ENDING = callable(getattr(SynchronousMultiSpanProcessor, "_on_ending", None))


def install_processor(provider: SdkTracerProvider, processor: SpanProcessor) -> None:
    """Add ``processor`` to ``provider``: first in line where the SDK has no ``_on_ending``."""
    provider.add_span_processor(processor)
    if ON_ENDING:
        return
    multi: Any = provider._active_span_processor
    with multi._lock:
        others = tuple(p for p in multi._span_processors if p is not processor)
        multi._span_processors = (processor, *others)


def configure_sdk_from_environment() -> None:
    """Run the SDK's own env-driven configurator (what ``opentelemetry-distro`` runs)."""
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator

    configurator: Any = _OTelSDKConfigurator  # untyped upstream
    configurator().configure()
