"""The SDK internals we rely on behave as ``_sdk_bridge`` expects, on every SDK of the range
(``make test`` runs this file against the oldest and the newest, ``make compat`` against
releases in between too): fails loudly on a change."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from _support import run_python
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from sqreen_otel import SecurityEventSampler
from sqreen_otel._sdk_bridge import (
    ON_ENDING,
    add_event_if_open,
    bounded_list,
    carrier_tracer,
    event_limits,
    has_events,
    install_processor,
    max_events,
    run_if_open,
    set_attributes_while_ending,
    set_event_timestamp,
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
    if sdk_version() >= (1, 43):  # the store is frozen by Span.end(), before _on_ending
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
    assert ON_ENDING is (sdk_version() >= (1, 40))


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


def test_max_events_evicts_the_oldest_as_rescue_evicted_expects() -> None:
    span = sdk_span(TracerProvider(span_limits=SpanLimits(max_events=2)))
    for name in ("first", "second", "third"):
        span.add_event(name)
    assert [event.name for event in span.events] == ["second", "third"]  # the oldest went
    assert span.dropped_events == 1


def test_run_if_open_runs_until_the_span_ends() -> None:
    span = sdk_span(TracerProvider())
    ran: list[int] = []
    assert run_if_open(span, lambda: ran.append(1)) is True
    span.end()
    assert run_if_open(span, lambda: ran.append(2)) is False
    assert ran == [1]


def test_set_event_timestamp_changes_the_events_time() -> None:
    event = Event("e", None, 1_000)
    set_event_timestamp(event, 2_000)
    assert event.timestamp == 2_000


def test_bounded_list_keeps_items_and_the_dropped_count() -> None:
    events = [Event("a"), Event("b")]
    bounded = bounded_list(events, 3)
    assert list(bounded) == events and bounded.dropped == 3
    copy = ReadableSpan(name="s", events=bounded)
    assert copy.dropped_events == 3 and [event.name for event in copy.events] == ["a", "b"]


def test_logger_provider_is_set_reads_the_api_global(tmp_path: Path) -> None:
    """In a fresh process: unset, then set (the API allows one global provider per process)."""
    program = (
        "from opentelemetry._logs import set_logger_provider\n"
        "from opentelemetry.sdk._logs import LoggerProvider\n"
        "from sqreen_otel._sdk_bridge import logger_provider_is_set\n"
        "print(logger_provider_is_set())\n"
        "set_logger_provider(LoggerProvider())\n"
        "print(logger_provider_is_set())\n"
    )
    completed = run_python(["-c", program], tmp_path)
    assert completed.stdout.split() == ["False", "True"], completed.stderr
