"""Edge cases that must not lose events: sampling, no request, late calls, event limits."""

from __future__ import annotations

import gc
import threading

import pytest
from _support import Otel, events_of, make_otel, only
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from werkzeug.test import Client

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware

UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def tracking_app(environ: object, start_response: object) -> list[bytes]:
    sqreen_otel.auth_track(False, username="eve")
    sqreen_otel.track("second.event")
    start_response("200 OK", [])  # type: ignore[operator]
    return [b"ok"]


def test_unsampled_incoming_trace_still_records_and_exports_security_events(otel: Otel) -> None:
    """An unsampled request records nothing until its first event, which starts one carrier with
    the request's fields from the environ; every event of the request goes on it."""
    app = OpenTelemetryMiddleware(SqreenMiddleware(tracking_app), tracer_provider=otel.provider)
    Client(app).get(
        "/login?next=/home",
        headers={"traceparent": UNSAMPLED_PARENT, "User-Agent": "ua/1"},
        environ_base={"REMOTE_ADDR": "198.51.100.4"},
        buffered=True,
    )
    assert otel.app_spans() == ()  # the app's own pipeline does not export unsampled traces
    (span,) = otel.exported()
    assert span.name == "sqreen.events" and not span.context.trace_flags.sampled
    assert span.context.trace_id == int(UNSAMPLED_PARENT.split("-")[1], 16)  # the request's trace
    attributes = dict(span.attributes or {})
    assert attributes["sqreen.carrier.reason"] == "unsampled"
    assert attributes["http.request.method"] == "GET" and attributes["url.path"] == "/login"
    assert attributes["url.query"] == "next=/home" and attributes["user_agent.original"] == "ua/1"
    assert attributes["client.address"] == "198.51.100.4"
    assert [e.name for e in span.events] == ["users.login.failure", "second.event"]
    assert sqreen_otel.stats()["requests_on_carrier_unsampled"] == 1


def test_ratio_sampler_drops_traces_but_not_security_events() -> None:
    with make_otel(sampler=ParentBased(TraceIdRatioBased(0.0))) as otel:
        tracer = otel.provider.get_tracer("t")
        with (
            tracer.start_as_current_span("GET /", kind=SpanKind.SERVER),
            tracer.start_as_current_span("child") as child,
        ):
            assert not child.is_recording()  # children of unsampled requests stay cheap
            sqreen_otel.track("from.child")
        assert otel.app_spans() == ()
        (span,) = otel.exported()  # no middleware: a carrier without request fields, still exported
        assert span.name == "sqreen.events"
        assert dict(span.attributes or {})["sqreen.carrier.reason"] == "unsampled"
        assert [e.name for e in span.events] == ["from.child"]


def test_a_host_sampler_that_drops_everything_is_left_alone_and_loses_no_event() -> None:
    with make_otel(sampler=ALWAYS_OFF) as otel:
        assert otel.provider.sampler is ALWAYS_OFF  # never replaced: the host's spans cost nothing more
        with otel.provider.get_tracer("app").start_as_current_span("GET /", kind=SpanKind.SERVER):
            assert sqreen_otel.track("kept") is True
        assert otel.app_spans() == ()
        (carrier,) = otel.exported()
        assert [e.name for e in carrier.events] == ["kept"] and not carrier.context.trace_flags.sampled
        assert "events_lost_unsampled" not in sqreen_otel.stats()


def test_no_request_span_uses_the_current_recording_span_or_a_carrier(otel: Otel) -> None:
    def background() -> None:
        with otel.tracer.start_as_current_span("nightly.job"):
            sqreen_otel.track("job.event")
        sqreen_otel.from_context().track_event("orphan").with_properties({"k": 1})

    worker = threading.Thread(target=background)
    worker.start()
    worker.join()
    gc.collect()
    assert [e.name for e in only(otel.app_spans(), "nightly.job").events] == ["job.event"]
    exported = otel.exported()
    carrier = only(exported, "sqreen.events")
    assert dict(carrier.attributes or {})["sqreen.carrier.reason"] == "no_request"
    assert events_of(carrier) == [("orphan", {"sqreen.properties.k": 1, "sqreen.event.type": "track"})]


def test_calls_after_the_request_span_ended_are_exported_with_the_request_context(otel: Otel) -> None:
    captured: list[otel_context.Context] = []

    def app(environ: object, start_response: object) -> list[bytes]:
        sqreen_otel.identify({"uid": "u-9"})
        captured.append(otel_context.get_current())
        start_response("200 OK", [])  # type: ignore[operator]
        return [b"ok"]

    stack = OpenTelemetryMiddleware(SqreenMiddleware(app), tracer_provider=otel.provider)
    Client(stack).get(
        "/pay",
        headers={"X-Forwarded-For": "203.0.114.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
        buffered=True,
    )
    request_span = only(otel.app_spans(), "GET /pay")

    def outlives_the_response() -> None:
        record = sqreen_otel.from_context(captured[0])
        record.track_event("late.one").with_properties({"step": 1})
        builder = record.track_event("late.two")
        builder.with_timestamp(__import__("datetime").datetime.now(tz=__import__("datetime").timezone.utc))
        builder.with_properties({"step": 2})  # refined after creation: still one final event

    worker = threading.Thread(target=outlives_the_response)
    worker.start()
    worker.join()
    gc.collect()
    carriers = [s for s in otel.exported() if s.name == "sqreen.events"]
    assert sorted(e.name for s in carriers for e in s.events) == ["late.one", "late.two"]
    for carrier in carriers:
        attributes = dict(carrier.attributes or {})
        assert attributes["sqreen.carrier.reason"] == "late"
        assert attributes["client.address"] == "203.0.114.7"
        assert carrier.parent is not None and carrier.parent.span_id == request_span.context.span_id
        ((name, event_attributes),) = events_of(carrier)
        assert event_attributes["sqreen.properties.step"] == (1 if name == "late.one" else 2)
        assert event_attributes["sqreen.user.uid"] == "u-9"


def test_events_pushed_out_by_the_span_event_limit_are_counted_warned_and_re_emitted(
    sqreen_logs: pytest.LogCaptureFixture,
) -> None:
    with make_otel(span_limits=SpanLimits(max_events=3)) as otel:
        with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER) as span:
            for index in range(4):
                sqreen_otel.track(f"security.{index}")
            for index in range(3):
                span.add_event(f"app.noise.{index}")
        request = only(otel.app_spans(), "GET /")
        assert [e.name for e in request.events] == ["app.noise.0", "app.noise.1", "app.noise.2"]
        assert sqreen_otel.stats()["events_evicted"] == 4
        assert sum("OTEL_SPAN_EVENT_COUNT_LIMIT" in r.getMessage() for r in sqreen_logs.records) == 1
        carriers = [s for s in otel.exported() if s.name == "sqreen.events"]
        assert len(carriers) == 2  # carriers obey the same 3-event limit
        assert {dict(c.attributes or {})["sqreen.carrier.reason"] for c in carriers} == {"evicted"}
        assert [e.name for c in carriers for e in c.events] == [f"security.{i}" for i in range(4)]
        assert all(c.dropped_events == 0 for c in carriers)


def test_a_change_after_the_event_was_handed_on_is_ignored_with_a_warning(
    otel: Otel, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        builder = sqreen_otel.from_context().track_event("early").with_properties({"v": 1})
    builder.with_properties({"v": 2})
    (span,) = otel.app_spans()
    assert events_of(span)[0][1]["sqreen.properties.v"] == 1
    assert events_of(otel.exported()[0])[0][1]["sqreen.properties.v"] == 1
    assert sqreen_otel.stats()["event_changes_after_end_ignored"] == 1
    assert any("changed after its span ended" in r.getMessage() for r in sqreen_logs.records)


def test_concurrent_worker_threads_on_one_request(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        ctx = otel_context.get_current()
        barrier = threading.Barrier(8)

        def work(worker: int) -> None:
            barrier.wait()
            record = sqreen_otel.from_context(ctx)
            for index in range(25):
                record.track_event("bulk").with_properties({"worker": worker, "index": index})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # 200 events exceed the default 128 per span: the oldest are re-emitted on carriers.
    spans = otel.app_spans()
    recorded = [
        (a["sqreen.properties.worker"], a["sqreen.properties.index"])
        for span in spans
        for _, a in events_of(span)
    ]
    assert sorted(recorded) == [(w, i) for w in range(8) for i in range(25)]
    assert sqreen_otel.stats()["events_evicted"] == 200 - 128
