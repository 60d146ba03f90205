"""The spans the export benchmarks use: realistic request spans, each carrying security events."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

import sqreen_otel

PROPERTIES = {
    "item": "book",
    "amount": 12.5,
    "currency": "EUR",
    "quantity": 2,
    "coupon": "WELCOME10",
    "note": "gift wrap, card 4111 1111 1111 1111",
    "session_token": "tok-7f3a9c",
    "express": True,
}
REQUEST: dict[str, AttributeValue] = {
    "http.request.method": "POST",
    "url.path": "/checkout",
    "url.query": "step=pay&ref=newsletter&api_key=k-123",
    "url.scheme": "https",
    "server.address": "shop.example",
    "client.address": "203.0.113.7",
    "network.peer.address": "10.0.0.2",
    "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
    "http.response.status_code": 200,
    "http.request.header.authorization": ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",),
}


def request_spans(count: int, events_per_span: int = 1) -> list[ReadableSpan]:
    """``count`` finished request spans with ``events_per_span`` purchase events each (not scrubbed)."""
    provider = TracerProvider(shutdown_on_exit=False)
    collected = InMemorySpanExporter()
    sqreen_otel.configure(
        tracer_provider=provider, exporter=collected, heartbeat_delay=3600, batch_size=100_000
    )
    sqreen_otel.configure(tracer_provider=provider, exporter=collected, strip_sensitive_data=False)
    tracer = provider.get_tracer("bench")
    for index in range(count):
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, attributes=REQUEST):
            sqreen_otel.identify({"uid": f"u{index % 500}", "email": f"user{index % 500}@example.com"})
            for _ in range(events_per_span):
                sqreen_otel.from_context().track_event("payment.purchase").with_properties(PROPERTIES)
    sqreen_otel.flush(60)
    spans = list(collected.get_finished_spans())
    provider.shutdown()
    return spans
