"""The otlp exporter against a real OTLP/HTTP receiver decoding the official protobuf."""

from __future__ import annotations

import urllib.parse
from importlib.metadata import entry_points
from typing import Any

import pytest
from _receivers import OtlpReceiver, running
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._scrubbing.scrubber import MASK


def attributes_of(message: Any) -> dict[str, object]:
    """A protobuf Span's or Event's attributes as a dict."""
    values = {}
    for item in message.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind) if kind else None
    return values


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_scrubbed_events_reach_an_otlp_collector_as_log_records(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    receiver = OtlpReceiver()
    with running(receiver):
        base = receiver.logs_url.removesuffix("/v1/logs")
        monkeypatch.setenv(variable, receiver.logs_url if "LOGS" in variable else base)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=sec%20ops")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        provider = TracerProvider(resource=Resource({"service.name": "shop"}), shutdown_on_exit=False)
        sqreen_otel.configure(tracer_provider=provider, exporter="otlp", heartbeat_delay=3600)
        query = {"url.query": "q=shoes&api_key=k-123", "url.path": "/search", "http.request.method": "GET"}
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("GET /search", kind=SpanKind.SERVER, attributes=query) as span:
            sqreen_otel.from_context().for_user({"uid": "u1"}).track_auth_failure()
            sqreen_otel.track("search", properties={"term": "shoes", "session_token": "t-456", "n": 2})
        assert sqreen_otel.flush(10)
        provider.shutdown()
        (request,) = receiver.log_requests()
        (received,) = receiver.received
    assert received.headers["x-team"] == "sec ops" and received.headers["content-encoding"] == "gzip"
    (resource_logs,) = request.resource_logs
    assert attributes_of(resource_logs.resource)["service.name"] == "shop"
    records = [record for scope in resource_logs.scope_logs for record in scope.log_records]
    assert [record.event_name for record in records] == ["users.login.failure", "search"]
    failure, search = records
    context = span.get_span_context()
    assert search.trace_id == context.trace_id.to_bytes(16, "big")  # correlated to the request span
    assert search.span_id == context.span_id.to_bytes(8, "big")
    assert attributes_of(failure)["sqreen.user.uid"] == "u1"
    values = attributes_of(search)
    assert values["sqreen.properties.session_token"] == MASK
    assert values["sqreen.properties.term"] == "shoes" and values["sqreen.properties.n"] == 2
    assert urllib.parse.parse_qs(str(values["url.query"])) == {"q": ["shoes"], "api_key": [MASK]}
    assert values["url.path"] == "/search" and values["http.request.method"] == "GET"
    assert values["sqreen.event.type"] == "track" and "sqreen.event.id" in values
    assert not receiver.requests()  # log records only: the collector never gets a second copy of spans


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
