"""``python queue_app.py RUN SECONDS``: an app tracking one event every 5 ms (test_durable_queue.py).

Each event carries its run and sequence number; a line ``tracked RUN N T`` (T: time.time())
is printed every 20 events, so the test knows what was tracked when. Settings come from the
environment (SQREEN_EXPORTER, SQREEN_INGESTION_URL, SQREEN_LOCAL_STORE...).
"""

from __future__ import annotations

import sys
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import sqreen_otel


def main(run: str, seconds: float) -> None:
    provider = TracerProvider()
    sqreen_otel.configure(tracer_provider=provider)
    tracer = provider.get_tracer("queue_app")
    deadline = time.monotonic() + seconds
    sequence = 0
    while time.monotonic() < deadline:
        with tracer.start_as_current_span("POST /order", kind=SpanKind.SERVER):
            sqreen_otel.track("order.placed", properties={"run": run, "sequence": sequence})
        sequence += 1
        if sequence % 20 == 0:
            print(f"tracked {run} {sequence} {time.time()}", flush=True)
        time.sleep(0.005)
    print(f"done {run} {sequence}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
