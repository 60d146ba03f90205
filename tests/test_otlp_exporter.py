"""The otlp exporter against a real OTLP/HTTP receiver decoding the official protobuf."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pytest
from _receivers import OtlpReceiver, running
from _support import make_otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._scrub import MASK, URL_MASK


def attributes_of(message: Any) -> dict[str, object]:
    """A protobuf Span's or Event's attributes as a dict."""
    values = {}
    for item in message.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind) if kind else None
    return values


def test_scrubbed_events_reach_an_otlp_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = OtlpReceiver()
    with running(receiver):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url)
        with make_otel() as otel:
            sqreen_otel.configure(tracer_provider=otel.provider, exporter="otlp", heartbeat_delay=3600)
            query = {"url.query": "q=shoes&api_key=k-123"}
            with otel.tracer.start_as_current_span("GET /search", kind=SpanKind.SERVER, attributes=query):
                sqreen_otel.track("search", properties={"term": "shoes", "session_token": "t-456"})
            assert sqreen_otel.flush(10)
        (request,) = receiver.requests()
    (span,) = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert attributes_of(span)["url.query"] == f"q=shoes&api_key={URL_MASK}"
    (event,) = span.events
    assert event.name == "search"
    assert attributes_of(event)["sqreen.properties.session_token"] == MASK
    assert attributes_of(event)["sqreen.properties.term"] == "shoes"


def test_the_sqreen_traces_exporter_entry_point_scrubs_a_stock_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (entry_point,) = entry_points(group="opentelemetry_traces_exporter", name="sqreen")
    receiver = OtlpReceiver()
    with running(receiver):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(
            SimpleSpanProcessor(entry_point.load()())
        )  # as OTEL_TRACES_EXPORTER=sqreen does
        with provider.get_tracer("app").start_as_current_span("checkout", attributes={"db.password": "p"}):
            pass
        provider.shutdown()
        (request,) = receiver.requests()
    (span,) = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert attributes_of(span)["db.password"] == MASK
