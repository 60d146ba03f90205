"""Run by test_local_store.py: one process writing events into a shared store."""

from __future__ import annotations

import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import sqreen_otel


def main(store: str, label: str, count: int) -> None:
    provider = TracerProvider()
    sqreen_otel.configure(tracer_provider=provider, exporter="local", local_store=store, batch_size=7)
    tracer = provider.get_tracer("writer")
    for index in range(count):
        with tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("write", properties={"writer": label, "index": index})
    assert sqreen_otel.flush(30)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
