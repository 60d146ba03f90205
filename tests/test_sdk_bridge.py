"""The SDK internals we rely on still behave as pinned (fails loudly on an SDK upgrade)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import Event, SpanLimits, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan

from sqreen_otel._sdk_bridge import (
    add_event_if_open,
    event_limits,
    has_events,
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


def test_set_attributes_while_ending_writes_a_frozen_span() -> None:
    span = sdk_span(TracerProvider(), **{"client.address": "peer"})
    span.end()
    with pytest.raises(TypeError):
        store: Any = span._attributes  # proves the store is frozen
        store["x"] = "y"
    set_attributes_while_ending(span, {"client.address": "client"})
    assert dict(span.attributes or {}) == {"client.address": "client"}


def test_event_limits_follow_the_provider() -> None:
    limits = SpanLimits(max_event_attributes=7, max_attribute_length=99)
    assert event_limits(sdk_span(TracerProvider(span_limits=limits))) == (7, 99)


def test_has_events_and_max_events() -> None:
    span = sdk_span(TracerProvider(span_limits=SpanLimits(max_events=5)))
    assert has_events(span) is False
    span.add_event("e")
    assert has_events(span) is True
    assert max_events(span) == 5
