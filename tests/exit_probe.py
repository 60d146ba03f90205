"""Run by test_exit.py: track events, then exit normally (the exit hook flushes)."""

from __future__ import annotations

import os
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import sqreen_otel


def main(url: str, graceful_timeout: float) -> None:
    provider = TracerProvider(shutdown_on_exit=False)  # only sqreen_otel's own exit hook flushes
    sqreen_otel.configure(
        tracer_provider=provider,
        exporter="http",
        ingestion_url=url,
        heartbeat_delay=3600,
        graceful_timeout=graceful_timeout,
    )
    if os.environ.get("PROBE_NO_THREADS_AT_EXIT"):  # Python 3.12+'s exit, on any Python
        import _no_threads_at_exit

        _no_threads_at_exit.install()
    with provider.get_tracer("probe").start_as_current_span("POST /login", kind=SpanKind.SERVER):
        for attempt in range(3):
            sqreen_otel.auth_track(False, username=f"user{attempt}")
    print("tracked", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
