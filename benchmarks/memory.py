"""(e) memory, in a process of its own: what queued events cost in RAM.

1. The destination is down (the http exporter to a closed port on 127.0.0.1): events queue in
   the store on disk, not in memory. Requests arrive at a steady 4,000 a second (a busy app;
   a loop tracking as fast as the CPU allows would starve the spool's writer of the GIL and
   measure that instead). RSS is read after 10,000 queued events, then after a 10x overload,
   twice (a leak would keep growing).
2. The disk refuses writes (the store's folder cannot be created): events are held in memory,
   bounded by SQREEN_MAX_QUEUE_LENGTH: RSS per held event, and flat past the bound.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import tempfile
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from workload import track_requests  # benchmarks/ is on sys.path: it is the script's folder

import sqreen_otel


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe is: connections refused


def settled(provider: TracerProvider) -> float:
    sqreen_otel.flush(60)
    gc.collect()
    return rss_mb()


def paced(tracer: Tracer, count: int, seed: int, per_second: float = 4000.0) -> None:
    """``count`` requests at a steady rate (in slices of 40)."""
    start = time.monotonic()
    for index in range(0, count, 40):
        track_requests(tracer, min(40, count - index), seed=seed * 1_000_000 + index)
        ahead = start + (index + 40) / per_second - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def destination_down(folder: str) -> dict[str, float]:
    provider = TracerProvider(shutdown_on_exit=False)
    sqreen_otel.configure(
        tracer_provider=provider,
        exporter="http",
        ingestion_url=f"http://127.0.0.1:{closed_port()}/batches",
        local_store=os.path.join(folder, "down.db"),
        heartbeat_delay=0.5,
    )
    tracer = provider.get_tracer("bench")
    track_requests(tracer, 500, seed=1)  # warm up allocators, the store and the caches
    baseline = settled(provider)
    paced(tracer, 10_000, seed=2)
    queued = settled(provider)
    paced(tracer, 100_000, seed=3)
    overload = settled(provider)
    paced(tracer, 100_000, seed=4)
    sustained = settled(provider)
    stats = sqreen_otel.stats()
    provider.shutdown()
    sqreen_otel.shutdown()
    return {
        "baseline_mb": baseline,
        "queued_mb": queued,
        "overload_mb": overload,
        "sustained_mb": sustained,
        "stored": stats.get("events_stored", 0),
        "dropped": sum(count for name, count in stats.items() if name.startswith("events_dropped")),
        "exported": stats.get("events_exported.http", 0),
    }


def disk_refuses(folder: str) -> dict[str, float]:
    blocker = os.path.join(folder, "a-file")
    with open(blocker, "w", encoding="ascii"):
        pass
    provider = TracerProvider(shutdown_on_exit=False)
    config = sqreen_otel.configure(
        tracer_provider=provider, exporter="local", local_store=os.path.join(blocker, "events.db")
    )
    tracer = provider.get_tracer("bench")
    track_requests(tracer, 500, seed=5)
    baseline = settled(provider)
    track_requests(tracer, config.max_queue_length, seed=6)
    full = settled(provider)
    track_requests(tracer, 10 * config.max_queue_length, seed=7)
    overload = settled(provider)
    stats = sqreen_otel.stats()
    return {
        "bound": config.max_queue_length,
        "baseline_mb": baseline,
        "held_mb": full,
        "overload_mb": overload,
        "dropped": stats.get("events_dropped.store_unavailable", 0),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        down = destination_down(folder)
        refused = disk_refuses(folder)
    json.dump({"down": down, "refused": refused}, sys.stdout)


if __name__ == "__main__":
    main()
