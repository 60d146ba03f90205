"""Benchmarks (``make bench``): ratios of two variants measured side by side in one run.

Each benchmark alternates rounds of variant A and variant B (order swapped every round) so
machine noise hits both alike, and reports the median of the per-round time ratios. Absolute
times are printed for context only: they are not comparable across machines.
"""

from __future__ import annotations

import gc
import io
import itertools
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
from opentelemetry.sdk.trace.sampling import Sampler
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


def _stack(
    framework: str, with_sqreen: bool, sampler: Sampler | None = None
) -> Callable[..., Iterable[bytes]]:
    """The same app with the host's usual pipeline, with or without the sqreen layer."""
    provider = TracerProvider(shutdown_on_exit=False, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), schedule_delay_millis=60_000))
    if with_sqreen:
        sqreen_otel.configure(tracer_provider=provider, exporter="none")
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


def bench_requests(rounds: int, per_round: int = 400) -> list[Result]:
    """(b) a request that tracks nothing, with vs without the sqreen layer: every trace sampled,
    and a host sampling 1% of traces; (b'') through Flask."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    results = []
    one_percent = ParentBased(TraceIdRatioBased(0.01))
    for framework, sampler, name, baseline, target in (
        (
            "wsgi",
            None,
            "(b) a request tracking nothing: OpenTelemetryMiddleware + sqreen layer",
            "OpenTelemetryMiddleware alone (same provider set-up)",
            1.05,
        ),
        (
            "wsgi",
            one_percent,
            "(b') the same, the host sampling 1% of traces (ParentBased(TraceIdRatioBased(0.01)))",
            "OpenTelemetryMiddleware alone, same sampler",
            1.05,
        ),
        (
            "flask",
            None,
            "(b'') the same request through Flask + FlaskInstrumentor + sqreen layer",
            "Flask + FlaskInstrumentor alone",
            None,
        ),
    ):
        ours, theirs = _stack(framework, True, sampler), _stack(framework, False, sampler)
        ratio = side_by_side(
            lambda ours=ours: _drive(ours, per_round),  # type: ignore[misc]
            lambda theirs=theirs: _drive(theirs, per_round),  # type: ignore[misc]
            rounds,
        )
        results.append(Result(name, baseline, *ratio, target=target))
    return results


def bench_export(rounds: int, spans_per_round: int = 500) -> list[str]:
    """(c) the spool's work alone: scrub + encode + write to the store, varied events, one core;
    (d) our OTLP log records (scrub + encode) vs the official OTLP span encoding of the same spans."""
    import tempfile

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from workload import request_spans

    from sqreen_otel._scrubbing.scrubber import Scrubber
    from sqreen_otel._shipping.event_model import scrubbed_events
    from sqreen_otel._shipping.spool import Spool, SpoolSettings
    from sqreen_otel._shipping.store import origin_for
    from sqreen_otel.exporters.otlp import encode_logs

    batches = [request_spans(spans_per_round, seed=round_) for round_ in range(min(rounds, 11))]
    settings = SpoolSettings(3600, 100_000, 100_000, 1 << 40, 1e9)

    with tempfile.TemporaryDirectory() as folder:

        def spool_round(index: int) -> float:
            origin = origin_for("bench", {})
            spool = Spool(f"{folder}/store-{index}.db", Scrubber(), settings, origin=origin)
            spool._db()  # the store exists already in a running app: not timed
            spans = batches[index % len(batches)]
            for span in spans:
                spool.submit(span, 1)
            start = time.process_time()
            spool.write_staged()
            elapsed = time.process_time() - start
            spool.finish(time.monotonic() + 5)
            return elapsed / len(spans)

        per_event = statistics.median(spool_round(index) for index in range(rounds))

    def ours(index: int) -> float:
        spans = batches[index % len(batches)]
        start = time.perf_counter()
        encode_logs(scrubbed_events(spans, Scrubber()), "bench", 0)
        return (time.perf_counter() - start) / len(spans)

    def official(index: int) -> float:
        spans = batches[index % len(batches)]
        start = time.perf_counter()
        encode_spans(spans).SerializeToString()
        return (time.perf_counter() - start) / len(spans)

    counter = iter(range(10**9))
    ratio, ours_us, theirs_us = side_by_side(
        lambda: ours(next(counter)), lambda: official(next(counter)), rounds
    )
    rate = 1 / per_event
    verdict = "  OK" if rate >= 60_000 else "  UNDER TARGET"
    return [
        "(c) export alone: scrub + encode + write to the store, varied events, fresh scrubber, one core\n"
        f"    {rate:,.0f} events/s (target >= 60,000){verdict}"
        f"   [{per_event * 1e6:.1f} us/event CPU, median]",
        Result(
            "(d) scrub + our OTLP log-record encoding of request spans with one event each",
            "the official OTLP span encoding of the same spans, unscrubbed",
            ratio,
            ours_us,
            theirs_us,
            target=None,
        ).line()
        + " (per event)",
    ]


def bench_whole_process(rounds: int, per_round: int = 1000) -> list[str]:
    """(g) whole-process CPU per tracked event, request path plus export, default exporter vs none."""
    import tempfile

    from workload import track_requests

    def cpu_per_event(exporter: str, folder: str, seed: int) -> float:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(NullExporter(), schedule_delay_millis=60_000))
        sqreen_otel.configure(  # a fresh scrubber, spool and store every round
            tracer_provider=provider, exporter=exporter, local_store=f"{folder}/round-{seed}.db"
        )
        tracer = provider.get_tracer("bench")
        track_requests(tracer, 50, seed=-seed)  # the store exists already in a running app
        assert sqreen_otel.flush(30)
        start = time.process_time()  # every thread of the process: the spool's work included
        track_requests(tracer, per_round, seed=seed)
        assert sqreen_otel.flush(30)
        elapsed = time.process_time() - start
        provider.shutdown()
        return elapsed / per_round

    with tempfile.TemporaryDirectory() as folder:
        seeds = iter(range(1, 10**6))
        ratio, local_us, none_us = side_by_side(
            lambda: cpu_per_event("local", folder, next(seeds)),
            lambda: cpu_per_event("none", folder, next(seeds)),
            max(5, rounds // 4),
        )
    return [
        Result(
            "(g) whole-process CPU per tracked event (8 varied properties, a user), default exporter",
            "the same workload with SQREEN_EXPORTER=none",
            ratio,
            local_us,
            none_us,
            target=2.0,
        ).line()
    ]


def bench_scrub_worst_case(rounds: int) -> list[str]:
    """(f) each rule's worst hostile value vs ordinary text of the same length (fresh scrubbers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from scrub_corpus import BENIGN, HOSTILE, SIZE, sized

    from sqreen_otel._scrubbing.scrubber import Scrubber

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


def bench_ip_lookup(rounds: int, cidrs: int = 100_000, per_round: int = 20_000) -> list[str]:
    """(h) an IP lookup among 100,000 CIDRs (IPv4 /16 to /32, mostly /32 and /24 as block lists
    are, and IPv6), fresh random addresses each round (mostly misses, as for most requests)."""
    import ipaddress
    import random

    from sqreen_otel._responses.actions import parse_actions
    from sqreen_otel._responses.index import ActionIndex

    rng = random.Random(1)
    ranges = []
    for position in range(cidrs):
        if position % 10 == 9:
            prefix = rng.choice([48, 56, 64, 128])
            value = (0x20010DB8 << 96 | rng.getrandbits(96)) & ~((1 << (128 - prefix)) - 1)
            ranges.append(str(ipaddress.IPv6Network((value, prefix))))
        else:  # a block list's shape: mostly single addresses and /24s, a few wider networks
            prefix = rng.choices([32, 24, rng.randint(16, 23)], weights=[85, 12, 3])[0]
            value = rng.getrandbits(32) & ~((1 << (32 - prefix)) - 1) & 0xFFFFFFFF
            ranges.append(str(ipaddress.IPv4Network((value, prefix))))
    raw = [
        {
            "action_id": f"a{start}",
            "action": "block_ip",
            "parameters": {"ip_cidr": ranges[start : start + 1000]},
        }
        for start in range(0, cidrs, 1000)
    ]
    started = time.perf_counter()
    actions, rejected = parse_actions(raw, {}, time.time())
    action_index = ActionIndex(actions, time.time())
    built = time.perf_counter() - started
    assert not rejected
    now = time.time()
    per_lookup = []
    hits = 0
    for _ in range(rounds):
        addresses = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(per_round)]
        gc.collect()
        start = time.perf_counter()
        for address in addresses:
            if action_index.match_ip(address, now) is not None:
                hits += 1
        per_lookup.append((time.perf_counter() - start) / per_round * 1e6)
    median = statistics.median(per_lookup)
    verdict = "OK" if median <= 2.0 else "OVER TARGET"
    return [
        f"(h) client-IP lookup among {cidrs:,} CIDRs (IPv4 /32, /24, /16-/23; IPv6), fresh random addresses\n"
        f"    median {median:.2f} us per lookup (target <= 2 us)  {verdict}   "
        f"[{hits / (rounds * per_round):.0%} hits; index built in {built:.2f} s]"
    ]


def bench_enforcement(rounds: int, per_round: int = 400) -> list[Result]:
    """(i) a request through the sqreen layer with enforcement on and an empty action store vs
    enforcement off: the same stack, each variant run with its own settings in force."""
    import tempfile

    from sqreen_otel._responses import enforcement

    with tempfile.TemporaryDirectory() as folder:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(NullExporter(), schedule_delay_millis=60_000))
        sqreen_otel.configure(tracer_provider=provider, exporter="none", actions_store=f"{folder}/actions.db")
        app = OpenTelemetryMiddleware(SqreenMiddleware(_hello), tracer_provider=provider)
        on, off = enforcement.settings(), enforcement.ResponseSettings()
        assert on.enabled and not off.enabled

        def run(settings: enforcement.ResponseSettings) -> float:
            enforcement.use_settings(settings)
            return _drive(app, per_round)

        ratio = side_by_side(lambda: run(on), lambda: run(off), rounds)
    return [
        Result(
            "(i) a request with enforcement on and an empty action store",
            "the same request with enforcement off",
            *ratio,
            target=1.02,
        )
    ]


TEN_PLAYBOOKS = "".join(
    f"""
[[playbooks]]
name = "bench-{n}"
events = ["users.login.failure", "users.signup"]
group_by = "{group}"
{distinct}threshold = "{1000 + n} in 10m"
  [[playbooks.where]]
  field = "path"
  regex = "^/log"
  [[playbooks.actions]]
  type = "block_ip"
  duration = "1h"
"""
    for n, group, distinct in [
        (n, "client_ip" if n % 2 else "user", 'distinct = "user"\n' if n % 3 == 0 else "") for n in range(10)
    ]
)


def _login(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One failed login per request, a new user each time (the case users have)."""
    sqreen_otel.auth_track(False, username=f"user{next(_users)}@example.com")
    start_response("401 Unauthorized", [("Content-Type", "text/plain")])
    return [b"denied"]


_users = itertools.count()


def bench_playbooks_request(rounds: int, per_round: int = 400) -> list[Result]:
    """(j) a request tracking one login failure, with 10 playbooks active vs none: both write
    the event to the store; with playbooks, the evaluator also runs in a thread of this process
    (it competes for the GIL: the cost an app sees on its request path)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        playbooks = Path(folder) / "playbooks.toml"
        playbooks.write_text(TEN_PLAYBOOKS)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(NullExporter(), schedule_delay_millis=60_000))
        app = OpenTelemetryMiddleware(SqreenMiddleware(_login), tracer_provider=provider)
        common = {"tracer_provider": provider, "exporter": "local", "local_store": f"{folder}/events.db"}

        def run(playbooks_file: str | None) -> float:
            sqreen_otel.configure(**common, playbooks_file=playbooks_file)  # type: ignore[arg-type]
            took = _drive(app, per_round)
            sqreen_otel.flush(30)  # each variant's writing (and evaluating) inside its own round
            return took

        ratio = side_by_side(lambda: run(str(playbooks)), lambda: run(None), rounds)
        sqreen_otel.configure(exporter="none", tracer_provider=provider)
    return [
        Result(
            "(j) a request tracking one login failure, 10 playbooks active (evaluator in-process)",
            "the same request, no playbook",
            *ratio,
            target=1.2,
        )
    ]


def bench_evaluator(events: int = 200_000) -> list[str]:
    """(k) evaluator throughput on one core: 10 playbooks over varied login failures (10,000
    IPs, 50,000 users), counts in memory; and through a real Redis when redis-server is here."""
    import random
    import shutil
    import socket
    import subprocess
    import tempfile

    from sqreen_otel._playbooks.engine import Engine
    from sqreen_otel._playbooks.fields import Observed, user_text
    from sqreen_otel._playbooks.schema import parse_text
    from sqreen_otel._playbooks.windows import MemoryWindows, RedisWindows

    rng = random.Random(7)
    start = time.time()
    users = [{"username": f"user{rng.randrange(50_000)}@example.com"} for _ in range(events)]
    stream = [  # as the evaluator builds them from the store's rows (Observed.from_event)
        Observed(
            "users.login.failure",
            start + n * 0.001,
            f"event-{n}",
            user,
            {},
            {
                "client_ip": f"10.{rng.randrange(40)}.{rng.randrange(250)}.1",
                "path": "/login",
                "method": "POST",
            },
            user_text(user),
        )
        for n, user in enumerate(users)
    ]
    playbooks = parse_text(TEN_PLAYBOOKS)

    def rate(engine: Engine, sample: list[Observed]) -> float:
        began = time.process_time()
        engine.observe_all(sample)
        return len(sample) / (time.process_time() - began)

    lines = [
        "(k) evaluator throughput, 10 playbooks, counts in memory:"
        f" {rate(Engine(playbooks, MemoryWindows()), stream):,.0f} events/s (CPU time of one core)"
    ]
    binary = shutil.which("redis-server")
    if binary is None:
        return [*lines, "    counts in Redis: skipped (no redis-server on this machine)"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            import redis

            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            sample = stream[:20_000]
            engine = Engine(playbooks, RedisWindows(client, "bench:"))
            began = time.perf_counter()
            for first in range(0, len(sample), 512):  # the evaluator's batches
                engine.observe_all(sample[first : first + 512])
            wall = len(sample) / (time.perf_counter() - began)
        finally:
            server.terminate()
            server.wait(10)
    return [
        *lines,
        f"    counts in a local Redis: {wall:,.0f} events/s (wall clock, batches of 512)",
    ]


def bench_explorer(events: int = 1_000_000) -> list[str]:
    """(l) the web Event Explorer's main views on a store of a million events (a week of them,
    50,000 users, 10,000 IPs): how long each API answer takes, median of 5, fresh connections."""
    import sqlite3
    import tempfile

    from sqreen_otel._shipping import store as _store
    from sqreen_otel._ui.api import Api, Context

    names = ["users.login.failure", "users.login.success", "users.signup", "payment.purchase", "sq.identify"]
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/events.db"
        _store.connect(path).close()  # the schema, as the app creates it
        now_ns = time.time_ns()
        step = int(7 * 86400 * 1e9 / events)
        began = time.perf_counter()
        db = sqlite3.connect(path)
        db.execute(
            "INSERT INTO events (event_key, time_ns, name, type, user, client_ip, user_agent, method, path,"
            " route, parameters, properties, trace_id, span_id, service, stored_ns, origin)"
            " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " SELECT 'k' || i, ? - i * ?, CASE i % 7 WHEN 0 THEN ? WHEN 1 THEN ? WHEN 2 THEN ? WHEN 3 THEN ?"
            " ELSE ? END, 'auth', json_object('email', 'user' || (i * 7919 % 50000) || '@example.com'),"
            " '10.' || (i % 40) || '.' || (i * 31 % 250) || '.1', 'bench/1.0', 'POST', '/login', '/login',"
            " '{}', json_object('attempt', i % 5), printf('%032x', i), printf('%016x', i), 'shop', ?, ''"
            " FROM n",
            (events, now_ns, step, names[0], names[0], names[1], names[2], names[4], now_ns),
        )
        db.commit()
        db.close()
        built = time.perf_counter() - began
        api = Api(Context(path, lambda: None, None, None, True))  # type: ignore[arg-type, return-value]

        def timed(call: Callable[[], object]) -> float:
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            return statistics.median(samples) * 1000

        views = [
            ("timeline, last 24 h per minute", lambda: api.timeline({"since": "24h", "bucket": "60"})),
            ("timeline, the whole week per hour", lambda: api.timeline({"since": "8d", "bucket": "3600"})),
            ("group by IP, last 24 h", lambda: api.groups({"since": "24h", "by": "ip"})),
            (
                "group by IP, login failures, last 24 h",
                lambda: api.groups({"since": "24h", "by": "ip", "name": names[0]}),
            ),
            ("group by user, the whole week", lambda: api.groups({"since": "8d", "by": "user"})),
            ("latest 100 events", lambda: api.events({"since": "24h", "limit": "100"})),
            ("one IP's latest 100 events", lambda: api.events({"ip": "10.7.217.1", "limit": "100"})),
            ("one event", lambda: api.event({"id": str(events // 2)})),
        ]
        lines = [f"(l) the web Event Explorer on {events:,} events (built in {built:.1f} s), median of 5:"]
        lines.extend(f"    {name}: {timed(call):,.0f} ms" for name, call in views)
    return lines


def bench_memory() -> list[str]:
    """(e) RAM of queued events (a process of its own: benchmarks/memory.py)."""
    import json
    import subprocess

    script = Path(__file__).with_name("memory.py")
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    m = json.loads(completed.stdout)
    down, refused = m["down"], m["refused"]
    first = (down["queued_mb"] - down["baseline_mb"]) * 1024 / 10_000  # includes caches warming up
    marginal = (down["sustained_mb"] - down["queued_mb"]) * 1024 / 200_000
    per_held = (refused["held_mb"] - refused["baseline_mb"]) * 1024 / refused["bound"]
    return [
        f"(e) memory, destination down (events queue in the store on disk): RSS {down['baseline_mb']:.1f} MB,"
        f" {down['queued_mb']:.1f} MB with 10,000 events queued ({first:.2f} KB each, SQLite and"
        f" allocator caches warming up included);\n    {marginal:.3f} KB per queued event over the next"
        f" 200,000 (target <= 1 KB)\n"
        f"    10x overload: {down['overload_mb']:.1f} MB, again: {down['sustained_mb']:.1f} MB"
        f" ({down['sustained_mb'] / down['overload_mb']:.3f}x: flat); {down['stored']:,} events stored,"
        f" {down['exported']:,} exported, {down['dropped']:,} dropped\n"
        f"    disk refusing writes (events held in memory, bound {refused['bound']:,}):"
        f" {per_held:.2f} KB per held event;"
        f" 10x overload {refused['overload_mb']:.1f} MB vs {refused['held_mb']:.1f} MB at the bound"
        f" ({refused['overload_mb'] / refused['held_mb']:.3f}x); {refused['dropped']:,} dropped and counted"
    ]


def main(argv: list[str]) -> int:
    rounds = int(argv[1]) if len(argv) > 1 else 41
    print(f"sqreen-otel benchmarks, Python {sys.version.split()[0]}, {rounds} alternating rounds each\n")
    results = (
        bench_track_event(rounds)
        + bench_requests(rounds)
        + bench_enforcement(rounds)
        + bench_playbooks_request(min(rounds, 21))
    )
    for result in results:
        print(result.line())
    lines = (
        bench_export(rounds)
        + bench_whole_process(rounds)
        + bench_scrub_worst_case(rounds)
        + bench_ip_lookup(min(rounds, 11))
        + bench_evaluator()
        + bench_explorer()
        + bench_memory()
    )
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
