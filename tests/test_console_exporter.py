"""The event model read back from spans, and the readable console exporter."""

from __future__ import annotations

import io

from _support import make_otel
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._scrubbing.scrubber import Scrubber
from sqreen_otel._shipping.event_model import scrubbed_events
from sqreen_otel.exporters import ConsoleEventExporter


def test_security_events_carry_default_properties_and_skip_foreign_events() -> None:
    with make_otel() as otel:
        attributes = {
            "http.request.method": "POST",
            "url.path": "/pay",
            "url.query": "coupon=X1",
            "client.address": "203.0.114.7",
            "user_agent.original": "ua/1",
        }
        with otel.tracer.start_as_current_span(
            "POST /pay", kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            span.add_event("exception", {"exception.type": "ValueError"})
            sqreen_otel.identify({"uid": "u1"})
            sqreen_otel.from_context().track_event("payment").with_properties({"amount": 3})
        (exported,) = otel.exported()
        events = scrubbed_events([exported], Scrubber())
    assert [e.name for e in events] == ["sq.identify", "payment"]
    payment = events[1]
    assert payment.properties == {"amount": 3}
    assert payment.user_identifiers == {"uid": "u1"}
    assert payment.request.client_ip == "203.0.114.7"
    assert payment.request.parameters == {"coupon": ["X1"]}
    out = io.StringIO()
    ConsoleEventExporter(out).export([exported])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith(
        "payment user={uid='u1'} ip=203.0.114.7 POST /pay params={coupon=['X1']} ua='ua/1' props={amount=3}"
    )
