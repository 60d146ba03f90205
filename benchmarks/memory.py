"""(e) memory, in a process of its own: RSS with a full default queue, then under 10x overload.

The destination is down (every export is a retryable failure), so the queue fills to its
bound (SQREEN_MAX_QUEUE_LENGTH, 10,000 events by default) and stays full; then ten times
that many events arrive and must be dropped (counted), twice: the second round shows whether
RSS keeps growing (a leak) or has reached its high-water mark.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Tracer
from workload import PROPERTIES, REQUEST  # benchmarks/ is on sys.path: it is the script's folder

import sqreen_otel
from sqreen_otel._outcome import ExportOutcome, ExportStatus


class DownDestination(SpanExporter):
    def export_batch(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
        return ExportOutcome(ExportStatus.RETRY, detail="down")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def track(tracer: Tracer, count: int) -> None:
    for index in range(count):
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, attributes=REQUEST):
            sqreen_otel.from_context().track_event("payment.purchase").with_properties(
                {**PROPERTIES, "order": index}
            )


def main() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    config = sqreen_otel.configure(tracer_provider=provider, exporter=DownDestination(), heartbeat_delay=0.5)
    tracer = provider.get_tracer("bench")
    track(tracer, 200)  # warm up allocators and caches
    gc.collect()
    baseline = rss_mb()
    track(tracer, config.max_queue_length)
    gc.collect()
    full = rss_mb()
    track(tracer, 10 * config.max_queue_length)
    gc.collect()
    overloaded = rss_mb()
    track(tracer, 10 * config.max_queue_length)  # sustained: a leak would keep growing here
    gc.collect()
    sustained = rss_mb()
    counters = sqreen_otel.stats()
    json.dump(
        {
            "queue_events": config.max_queue_length,
            "baseline_mb": baseline,
            "full_queue_mb": full,
            "overload_mb": overloaded,
            "sustained_mb": sustained,
            "dropped_queue_full": counters.get("events_dropped.queue_full.custom", 0),
            "recorded": counters.get("events_recorded", 0),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
