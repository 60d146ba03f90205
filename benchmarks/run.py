"""Benchmarks (``make bench``): ratios of two variants measured side by side in one run.

Each benchmark alternates rounds of variant A and variant B (order swapped every round) so
machine noise hits both alike, and reports the median of the per-round time ratios. Absolute
times are printed for context only: they are not comparable across machines.
"""

from __future__ import annotations

import gc
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware

PROPERTIES = {f"key_{i}": f"value-{i}" if i % 2 else i for i in range(8)}


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Result:
    name: str
    baseline: str
    ratio: float
    a_us: float
    b_us: float
    target: float | None

    def line(self) -> str:
        verdict = "" if self.target is None else ("  OK" if self.ratio <= self.target else "  OVER TARGET")
        target = "" if self.target is None else f" (target <= {self.target:.2f}x)"
        times = f"[{self.a_us:.2f} us vs {self.b_us:.2f} us per op, median]"
        return f"{self.name}\n    vs {self.baseline}\n    ratio {self.ratio:.3f}x{target}{verdict}   {times}"


def side_by_side(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple[float, float, float]:
    """Median ratio a/b over alternating rounds; each callable returns seconds per op."""
    ratios, a_times, b_times = [], [], []
    for index in range(rounds):
        gc.collect()
        if index % 2:
            tb, ta = b(), a()
        else:
            ta, tb = a(), b()
        ratios.append(ta / tb)
        a_times.append(ta)
        b_times.append(tb)
    return statistics.median(ratios), statistics.median(a_times) * 1e6, statistics.median(b_times) * 1e6


def bench_track_event(rounds: int, per_span: int = 100) -> list[Result]:
    """(a) from_context().track_event(name).with_properties(8) vs span.add_event(name, 8 attrs)."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), schedule_delay_millis=60_000))
    # The request path only: with an exporter, full batches would wake the export thread, whose
    # scrubbing (measured by (c) and (d)) would compete for the GIL with this variant alone.
    sqreen_otel.configure(tracer_provider=provider, exporter="none")
    tracer = provider.get_tracer("bench")
    attributes = {f"sqreen.properties.{k}": v for k, v in PROPERTIES.items()}

    def timed(record: Callable[[Any], None], include_end: bool) -> float:
        """Seconds per event for ``per_span`` calls of ``record(span)`` on one request span."""
        with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER, end_on_exit=False) as span:
            start = time.perf_counter()
            for _ in range(per_span):
                record(span)
            if include_end:
                span.end()
            elapsed = time.perf_counter() - start
        if not include_end:
            span.end()
        return elapsed / per_span

    def ours(span: Any) -> None:
        sqreen_otel.from_context().track_event("purchase").with_properties(PROPERTIES)

    def raw(span: Any) -> None:
        span.add_event("purchase", attributes)

    call_only = side_by_side(lambda: timed(ours, False), lambda: timed(raw, False), rounds)
    with_end = side_by_side(lambda: timed(ours, True), lambda: timed(raw, True), rounds)
    provider.shutdown()
    return [
        Result(
            "(a) from_context().track_event(name).with_properties(8 props), the call",
            "span.add_event(name, 8 attributes) on the same request span",
            *call_only,
            target=1.25,
        ),
        Result(
            "(a') the same, including the span end where our events are finalised",
            "span.add_event(name, 8 attributes) + span end",
            *with_end,
            target=1.25,
        ),
    ]


def _environ() -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/items",
        "QUERY_STRING": "page=2",
        "RAW_URI": "/items?page=2",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.2",
        "REMOTE_PORT": "51000",
        "HTTP_HOST": "localhost:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_X_FORWARDED_FOR": "203.0.114.7, 10.0.0.2",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[..., Any]:
    return lambda data: None


def _drive(app: Callable[..., Iterable[bytes]], per_round: int) -> float:
    """Seconds per request: call the app, consume the body, close it (what a server does)."""
    start = time.perf_counter()
    for _ in range(per_round):
        body = app(_environ(), _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - start) / per_round


def _stack(framework: str, with_sqreen: bool) -> Callable[..., Iterable[bytes]]:
    """The same app with the host's usual pipeline, with or without the sqreen layer."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), schedule_delay_millis=60_000))
    if with_sqreen:
        sqreen_otel.configure(tracer_provider=provider, exporter=NullExporter(), heartbeat_delay=3600)
    if framework == "wsgi":
        inner: Any = SqreenMiddleware(_hello) if with_sqreen else _hello
        return OpenTelemetryMiddleware(inner, tracer_provider=provider)
    import flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = flask.Flask(f"bench_{with_sqreen}")
    app.add_url_rule("/items", "items", lambda: f"page {flask.request.args.get('page')}")
    instrumentor: Any = FlaskInstrumentor()
    instrumentor.instrument_app(app, tracer_provider=provider)
    if with_sqreen:
        app.wsgi_app = SqreenMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app.wsgi_app


def bench_requests(rounds: int, per_round: int = 200) -> list[Result]:
    """(b) a request that tracks nothing, with vs without the sqreen layer; (b'') through Flask."""
    results = []
    for framework, name, baseline, target in (
        (
            "wsgi",
            "(b) a request tracking nothing: OpenTelemetryMiddleware + sqreen layer",
            "OpenTelemetryMiddleware alone (same provider set-up)",
            1.05,
        ),
        (
            "flask",
            "(b'') the same request through Flask + FlaskInstrumentor + sqreen layer (context only)",
            "Flask + FlaskInstrumentor alone",
            None,
        ),
    ):
        ours, theirs = _stack(framework, True), _stack(framework, False)
        ratio = side_by_side(
            lambda ours=ours: _drive(ours, per_round),  # type: ignore[misc]
            lambda theirs=theirs: _drive(theirs, per_round),  # type: ignore[misc]
            rounds,
        )
        results.append(Result(name, baseline, *ratio, target=target))
    return results


def bench_export(rounds: int, spans_per_batch: int = 200) -> list[str]:
    """(c) http exporter scrub + encode throughput; (d) scrub + OTLP encode vs OTLP encode alone."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from workload import request_spans

    from sqreen_otel import ScrubbingSpanExporter
    from sqreen_otel._outcome import SUCCESS, ExportOutcome
    from sqreen_otel._scrub import Scrubber
    from sqreen_otel.exporters import SqreenHttpExporter

    class EncodeOnly(SqreenHttpExporter):
        """The http exporter up to the wire (scrub, points, JSON, gzip); the send is not timed."""

        def _send(self, body: bytes) -> ExportOutcome:
            return SUCCESS

    spans = request_spans(spans_per_batch)
    events = sum(len(span.events) for span in spans)
    scrubbing = ScrubbingSpanExporter(NullExporter(), Scrubber())
    http = ScrubbingSpanExporter(EncodeOnly("https://ingest.invalid/batches"), Scrubber())

    def http_batch() -> float:
        start = time.perf_counter()
        http.export(spans)
        return (time.perf_counter() - start) / events

    def scrub_then_otlp() -> float:
        start = time.perf_counter()
        encode_spans(scrubbing.scrub(spans)).SerializeToString()
        return (time.perf_counter() - start) / events

    def otlp_alone() -> float:
        start = time.perf_counter()
        encode_spans(spans).SerializeToString()
        return (time.perf_counter() - start) / events

    per_event = statistics.median(http_batch() for _ in range(rounds))
    ratio, ours, theirs = side_by_side(scrub_then_otlp, otlp_alone, rounds)
    rate = 1 / per_event
    verdict = "  OK" if rate >= 30_000 else "  UNDER TARGET"
    return [
        f"(c) http exporter: scrub + JSON + gzip of request spans with 2 events each, one core\n"
        f"    {rate:,.0f} events/s (target >= 30,000){verdict}   [{per_event * 1e6:.1f} us/event, median]",
        Result(
            "(d) scrub + official OTLP protobuf encoding of the same spans",
            "official OTLP protobuf encoding alone",
            ratio,
            ours,
            theirs,
            target=1.3,
        ).line()
        + " (per event)",
    ]


def bench_scrub_worst_case(rounds: int) -> list[str]:
    """(f) each rule's worst hostile value vs ordinary text of the same length (fresh scrubbers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from scrub_corpus import BENIGN, HOSTILE, SIZE, sized

    from sqreen_otel._scrub import Scrubber

    def timed(text: str) -> Callable[[], float]:
        def run() -> float:
            scrubber = Scrubber()  # no cache: each value is scrubbed as if new
            start = time.perf_counter()
            scrubber.scrub_text(text)
            return time.perf_counter() - start

        return run

    benign = sized(BENIGN, SIZE)
    results = {
        name: side_by_side(timed(sized(value, SIZE)), timed(benign), rounds)
        for name, value in HOSTILE.items()
    }
    worst = max(results, key=lambda name: results[name][0])
    ratio, hostile_us, benign_us = results[worst]
    lines = [
        f"(f) scrubbing a {SIZE:,}-character value: each rule's worst case vs ordinary text, same length",
        f"    worst: {worst!r} {ratio:.2f}x  [{hostile_us:.0f} us vs {benign_us:.0f} us, median]",
    ]
    lines += [
        f"    {name}: {r:.2f}x" for name, (r, _, _) in sorted(results.items(), key=lambda item: -item[1][0])
    ]
    return lines


def bench_memory() -> list[str]:
    """(e) peak RSS with a full default queue, and RSS under 10x overload (a process of its own)."""
    import json
    import subprocess

    script = Path(__file__).with_name("memory.py")
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    m = json.loads(completed.stdout)
    overload = 10 * m["queue_events"]
    return [
        f"(e) memory with the destination down: queue bound {m['queue_events']:,} events\n"
        f"    RSS {m['baseline_mb']:.1f} MB before, {m['full_queue_mb']:.1f} MB with a full queue "
        f"(+{m['full_queue_mb'] - m['baseline_mb']:.1f} MB for {m['queue_events']:,} queued events)\n"
        f"    after a 10x overload ({overload:,} more events): {m['overload_mb']:.1f} MB "
        f"({m['overload_mb'] / m['full_queue_mb']:.3f}x the full queue: retry high-water)\n"
        f"    after another 10x overload: {m['sustained_mb']:.1f} MB "
        f"({m['sustained_mb'] / m['overload_mb']:.3f}x the previous round: flat); "
        f"{m['dropped_queue_full']:,} events dropped and counted"
    ]


def main(argv: list[str]) -> int:
    rounds = int(argv[1]) if len(argv) > 1 else 41
    print(f"sqreen-otel benchmarks, Python {sys.version.split()[0]}, {rounds} alternating rounds each\n")
    results = bench_track_event(rounds) + bench_requests(rounds)
    for result in results:
        print(result.line())
    for line in bench_export(rounds) + bench_scrub_worst_case(rounds) + bench_memory():
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
