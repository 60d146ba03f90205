"""The SDK internals we rely on behave as ``_sdk_bridge`` expects, on every SDK of the range
(``make compat`` runs this file against the oldest and the newest): fails loudly on a change."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from sqreen_otel import SecurityEventSampler
from sqreen_otel._sdk_bridge import (
    ON_ENDING,
    add_event_if_open,
    carrier_tracer,
    event_limits,
    has_events,
    install_processor,
    max_events,
    set_attributes_while_ending,
)


def sdk_span(provider: TracerProvider, **attributes: str) -> SdkSpan:
    span = provider.get_tracer("t").start_span("s", attributes=attributes)
    assert isinstance(span, SdkSpan)
    return span


def test_add_event_if_open_appends_and_refuses_quietly_after_end(caplog: pytest.LogCaptureFixture) -> None:
    span = sdk_span(TracerProvider())
    assert add_event_if_open(span, Event("a")) is True
    span.end()
    with caplog.at_level(logging.DEBUG):
        assert add_event_if_open(span, Event("b")) is False
    assert [e.name for e in span.events] == ["a"]
    assert caplog.records == []


def test_set_attributes_while_ending_writes_an_ended_span_frozen_or_not() -> None:
    span = sdk_span(TracerProvider(), **{"client.address": "peer"})
    span.end()
    store: Any = span._attributes
    if ON_ENDING:  # SDK 1.39+: the store is frozen before _on_ending
        with pytest.raises(TypeError):
            store["x"] = "y"
    set_attributes_while_ending(span, {"client.address": "client"})
    assert dict(span.attributes or {}) == {"client.address": "client"}


def test_on_ending_is_detected_as_the_sdk_has_it() -> None:
    calls: list[str] = []

    class Recorder(SpanProcessor):
        def _on_ending(self, span: ReadableSpan) -> None:
            calls.append("ending")

        def on_end(self, span: ReadableSpan) -> None:
            calls.append("end")

    provider = TracerProvider()
    provider.add_span_processor(Recorder())
    provider.get_tracer("t").start_span("s").end()
    assert calls == (["ending", "end"] if ON_ENDING else ["end"])
    assert ON_ENDING is (sdk_version() >= (1, 39))


def test_install_processor_puts_ours_first_where_the_sdk_has_no_on_ending() -> None:
    provider = TracerProvider()
    first = SimpleSpanProcessor(InMemorySpanExporter())
    provider.add_span_processor(first)
    ours = SpanProcessor()
    install_processor(provider, ours)
    processors = provider._active_span_processor._span_processors
    assert processors == ((first, ours) if ON_ENDING else (ours, first))


def test_carrier_tracer_wraps_only_its_own_sampler() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer = carrier_tracer(provider, "sqreen_otel", "1")
    assert isinstance(getattr(tracer, "sampler", None), SecurityEventSampler)
    assert provider.sampler is ALWAYS_OFF and provider.get_tracer("app").sampler is ALWAYS_OFF  # type: ignore[attr-defined]
    span = tracer.start_span("carrier")
    assert span.is_recording() and not span.get_span_context().trace_flags.sampled


def test_the_sdk_configurator_and_the_suppression_helper_are_where_we_look() -> None:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    from sqreen_otel._sdk_bridge import configure_sdk_from_environment

    assert callable(configure_sdk_from_environment)
    with suppress_instrumentation():
        assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is True


def sdk_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("opentelemetry-sdk").split(".")[:2])


def test_event_limits_follow_the_provider() -> None:
    limits = SpanLimits(max_event_attributes=7, max_attribute_length=99)
    assert event_limits(sdk_span(TracerProvider(span_limits=limits))) == (7, 99)


def test_has_events_and_max_events() -> None:
    span = sdk_span(TracerProvider(span_limits=SpanLimits(max_events=5)))
    assert has_events(span) is False
    span.add_event("e")
    assert has_events(span) is True
    assert max_events(span) == 5
