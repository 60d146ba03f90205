"""What the benchmarks track: realistic requests, each with one security event of varied values.

Every request differs (user, amounts, notes, query, user agent), as in production, so that a
benchmark times the work and not the scrubber's caches (a cache hit costs a dict lookup).
"""

from __future__ import annotations

import random
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

import sqreen_otel

_WORDS = ("gift", "wrap", "express", "blue", "large", "promo", "spring", "refill", "bundle", "eco")


def properties(index: int, rng: random.Random) -> dict[str, Any]:
    """Eight properties, different for every request; one note holds a card number."""
    card = "4111 1111 1111 1111" if index % 10 == 0 else f"{rng.randrange(10**6):06d}"
    return {
        "item": f"sku-{rng.randrange(10**6)}",
        "amount": round(rng.uniform(1, 500), 2),
        "currency": rng.choice(("EUR", "USD", "GBP")),
        "quantity": rng.randrange(1, 9),
        "coupon": f"{rng.choice(_WORDS).upper()}{rng.randrange(100)}",
        "note": f"{' '.join(rng.sample(_WORDS, 3))}, ref {card}",
        "session_token": f"tok-{rng.getrandbits(48):x}",
        "express": rng.random() < 0.5,
    }


def request_attributes(index: int, rng: random.Random) -> dict[str, AttributeValue]:
    return {
        "http.request.method": "POST",
        "url.path": f"/checkout/{rng.randrange(10**5)}",
        "url.query": f"step=pay&ref={rng.choice(_WORDS)}&api_key=k-{rng.getrandbits(32):x}",
        "url.scheme": "https",
        "server.address": "shop.example",
        "client.address": f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "network.peer.address": "10.0.0.2",
        "user_agent.original": f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{rng.randrange(100, 140)}.0",
        "http.response.status_code": 200,
    }


def track_requests(tracer: Tracer, count: int, seed: int = 0) -> None:
    """``count`` request spans, each with one purchase event by a user (all values varied)."""
    rng = random.Random(seed)
    for index in range(count):
        attributes = request_attributes(index, rng)
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, attributes=attributes):
            sqreen_otel.from_context().for_user({"uid": f"u{rng.randrange(10**6)}"}).track_event(
                "payment.purchase"
            ).with_properties(properties(index, rng))


def request_spans(count: int, seed: int = 0) -> list[ReadableSpan]:
    """``count`` finished request spans, one purchase event each (not scrubbed)."""
    provider = TracerProvider(shutdown_on_exit=False)
    collected = InMemorySpanExporter()
    sqreen_otel.configure(
        tracer_provider=provider,
        exporter=collected,
        heartbeat_delay=3600,
        batch_size=100_000,
        strip_sensitive_data=False,
    )
    track_requests(provider.get_tracer("bench"), count, seed)
    sqreen_otel.flush(60)
    spans = list(collected.get_finished_spans())
    provider.shutdown()
    return spans
