"""``SQREEN_EVENT_SIGNAL``: our events as span events, as log records through the app's
``LoggerProvider``, both or neither; what we add to the app's telemetry is scrubbed; and with
the app's own exporters beside ours, a Collector receives each event exactly once."""

from __future__ import annotations

import sqlite3
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _instrumentations import needs
from _receivers import OtlpReceiver, running
from _support import LogCapture, Otel, make_otel, run_python
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind
from werkzeug.test import Client

import sqreen_otel
from sqreen_otel._config import build_config
from sqreen_otel._scrubbing.scrubber import MASK
from sqreen_otel.wsgi import SqreenMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SECRET_PROPERTIES = {"password": "hunter2", "card": "4111 1111 1111 1111", "plan": "pro"}
SCRUBBED_PROPERTIES = {"password": MASK, "card": MASK, "plan": "pro"}
COLLECTOR_APP = Path(__file__).with_name("collector_app.py")


def ours(event: Any) -> bool:
    return "sqreen.event.type" in dict(event.attributes or {})


def properties(attributes: Any) -> dict[str, object]:
    prefix = "sqreen.properties."
    return {key[len(prefix) :]: value for key, value in dict(attributes).items() if key.startswith(prefix)}


def test_events_on_host_spans_are_scrubbed_and_the_same_as_what_we_ship() -> None:
    with make_otel() as otel:
        with otel.tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER):
            sqreen_otel.identify({"email": "ann@example.com"}, traits={"api_token": "tok-hunter2"})
            sqreen_otel.track("pay", properties=SECRET_PROPERTIES)
        (exported,) = otel.exported()
        (request,) = otel.app_spans()
    host = next(event for event in request.events if event.name == "pay")
    shipped = next(event for event in exported.events if event.name == "pay")
    assert properties(host.attributes) == SCRUBBED_PROPERTIES
    assert dict(request.attributes or {})["sqreen.traits.api_token"] == MASK  # identify's traits too
    assert dict(host.attributes or {}) == dict(shipped.attributes or {})  # one copy, one id


def by_name(records: list[Any]) -> dict[str, Any]:
    return {record.event_name: record for record in records}


@pytest.fixture
def logs() -> LogCapture:
    return LogCapture()


def configure_signal(otel: Otel, signal: str, logs: LogCapture) -> None:
    sqreen_otel.configure(
        tracer_provider=otel.provider,
        exporter=otel.ours,
        heartbeat_delay=3600,
        event_signal=signal,
        logger_provider=logs.provider,
    )


def test_logs_signal_emits_log_records_correlated_to_the_request_and_no_span_events(logs: LogCapture) -> None:
    with make_otel() as otel:
        configure_signal(otel, "logs", logs)
        with otel.tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
            sqreen_otel.auth_track(False, username="ann")
            sqreen_otel.track("pay", properties=SECRET_PROPERTIES)
        exported = otel.exported()
        (request,) = otel.app_spans()
    assert not [event for event in request.events if ours(event)]  # the app's traces carry none
    records = by_name(logs.records())
    assert set(records) == {"users.login.failure", "pay"}
    pay = records["pay"]
    context = span.get_span_context()
    assert (pay.trace_id, pay.span_id) == (context.trace_id, context.span_id)
    attributes = dict(pay.attributes)
    assert properties(attributes) == SCRUBBED_PROPERTIES
    assert attributes["sqreen.event.type"] == "track"
    shipped = {event.name: dict(event.attributes or {}) for span_ in exported for event in span_.events}
    assert attributes["sqreen.event.id"] == shipped["pay"]["sqreen.event.id"]  # the same event
    assert records["users.login.failure"].attributes["sqreen.user.username"] == "ann"


def test_logs_signal_carries_the_requests_default_properties(logs: LogCapture) -> None:
    """A log record stands alone: it carries the request's default properties, scrubbed."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sqreen_otel.track("pay")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with make_otel() as otel:
        configure_signal(otel, "logs", logs)
        wsgi = OpenTelemetryMiddleware(SqreenMiddleware(app), tracer_provider=otel.provider)
        Client(wsgi).get("/pay?next=%2Fhome&token=abc", environ_base={"REMOTE_ADDR": "192.0.2.7"})
        assert sqreen_otel.flush(5)
    (pay,) = logs.records()
    attributes = dict(pay.attributes)
    assert attributes["url.path"] == "/pay"
    assert attributes["http.request.method"] == "GET"
    assert attributes["client.address"] == "192.0.2.7"
    assert attributes["url.query"] == urllib.parse.urlencode({"next": "/home", "token": MASK})


def test_logs_signal_without_a_request_logs_the_event_and_exports_no_empty_carrier(
    logs: LogCapture,
) -> None:
    with make_otel() as otel:
        configure_signal(otel, "logs", logs)
        worker = threading.Thread(target=lambda: sqreen_otel.track("nightly.job"))
        worker.start()
        worker.join()
        assert [span.name for span in otel.exported()] == ["sqreen.events"]  # ours still ship it
        assert otel.app_spans() == ()  # the carrier is never the app's to export
    assert [record.event_name for record in logs.records()] == ["nightly.job"]


def test_logs_signal_late_event_is_correlated_to_its_request(logs: LogCapture) -> None:
    with make_otel() as otel:
        configure_signal(otel, "logs", logs)
        with otel.tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
            record = sqreen_otel.from_context()
        record.track_event("after.response").with_properties({"late": True})
        assert sqreen_otel.flush(5)
        assert [s.name for s in otel.app_spans()] == ["POST /pay"]
    (late,) = logs.records()
    assert (late.trace_id, late.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )


def test_both_signals_carry_the_same_event_id(logs: LogCapture) -> None:
    with make_otel() as otel:
        configure_signal(otel, "both", logs)
        with otel.tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER):
            sqreen_otel.track("pay", properties=SECRET_PROPERTIES)
        otel.exported()
        (request,) = otel.app_spans()
    (span_event,) = [event for event in request.events if ours(event)]
    (record,) = logs.records()
    assert dict(span_event.attributes or {})["sqreen.event.id"] == dict(record.attributes)["sqreen.event.id"]


def test_none_keeps_events_out_of_the_apps_telemetry_but_ships_them(logs: LogCapture) -> None:
    with make_otel() as otel:
        configure_signal(otel, "none", logs)
        with otel.tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER):
            sqreen_otel.track("pay")
        (exported,) = otel.exported()
        (request,) = otel.app_spans()
    assert [event.name for event in exported.events] == ["pay"]
    assert not [event for event in request.events if ours(event)]
    assert logs.records() == []


def test_the_otlp_exporter_alone_is_the_collector_path_unless_told_otherwise(
    sqreen_logs: pytest.LogCaptureFixture,
) -> None:
    assert build_config({}, {}).event_signals == {"span"}
    assert build_config({"exporter": "otlp,local"}, {}).event_signals == frozenset()
    assert build_config({}, {"SQREEN_EXPORTER": "otlp", "SQREEN_EVENT_SIGNAL": "logs"}).event_signals == {
        "logs"
    }
    with make_otel():
        sqreen_otel.configure(exporter="otlp", event_signal="span")
    assert any("gets each security event twice" in r.getMessage() for r in sqreen_logs.records)
    with pytest.raises(ValueError, match="unknown event signal"):
        sqreen_otel.configure(event_signal="traces")


NO_PROVIDER_APP = """
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind
from werkzeug.test import Client
import sqreen_otel
provider = TracerProvider()
sqreen_otel.configure(tracer_provider=provider, event_signal="logs")
with provider.get_tracer("t").start_as_current_span("POST /x", kind=SpanKind.SERVER):
    sqreen_otel.track("unlogged")
print(sqreen_otel.flush(5), sqreen_otel.stats().get("events_dropped.rejected.logs"))
"""


def test_logs_signal_without_a_logger_provider_says_so_and_keeps_the_events(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    env = {"SQREEN_EXPORTER": "local", "SQREEN_LOCAL_STORE": str(store)}
    completed = run_python(["-c", NO_PROVIDER_APP], tmp_path, env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "1"]
    assert "has no LoggerProvider" in completed.stderr
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT name FROM events").fetchall() == [("unlogged",)]


def collector_copies(receiver: OtlpReceiver) -> tuple[Counter[str], list[bytes]]:
    """Every copy of our events the Collector received, by ``sqreen.event.id``: span events in
    the app's traces and log records (the app's or ours); and the raw bodies."""
    ids: Counter[str] = Counter()
    span_ids: Counter[bytes] = Counter()
    for request in receiver.requests():
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    span_ids[span.span_id] += 1
                    for event in span.events:
                        values = {kv.key: kv.value.string_value for kv in event.attributes}
                        if "sqreen.event.type" in values:
                            ids[values["sqreen.event.id"]] += 1
    assert set(span_ids.values()) <= {1}, "no span reached the Collector twice"
    for logs_request in receiver.log_requests():
        for resource_logs in logs_request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    values = {kv.key: kv.value.string_value for kv in record.attributes}
                    if "sqreen.event.type" in values:
                        ids[values["sqreen.event.id"]] += 1
    return ids, [item.body for item in receiver.received]


@needs("flask")  # collector_app is a Flask app
@pytest.mark.parametrize(
    ("exporter", "signal", "copies"),
    [
        ("otlp", None, 1),  # our otlp exporter is the path; the app's traces and logs carry none
        ("local", "logs", 1),  # the app's own log pipeline carries them
        ("local", None, 1),  # the app's own trace pipeline carries them (span events, scrubbed)
        ("otlp", "span", 2),  # asked for explicitly: two copies, one id, and a warning
    ],
)
def test_a_collector_beside_the_apps_own_exporters_gets_each_event_once(
    tmp_path: Path, exporter: str, signal: str | None, copies: int
) -> None:
    requests = 3
    receiver = OtlpReceiver()
    with running(receiver):
        env = {
            "OTEL_SERVICE_NAME": "collector-test",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url.removesuffix("/v1/traces"),
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "django",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "SQREEN_EXPORTER": exporter,
            "SQREEN_HEARTBEAT_DELAY": "0.2",
            **({"SQREEN_EVENT_SIGNAL": signal} if signal else {}),
        }
        instrument = str(Path(sys.executable).with_name("opentelemetry-instrument"))
        completed = run_python([str(COLLECTOR_APP), str(requests)], tmp_path, env, executable=instrument)
        assert completed.returncode == 0, completed.stderr
        ids, bodies = collector_copies(receiver)
    # Per request: sq.identify, users.login.failure, login.attempt.
    assert len(ids) == 3 * requests, (ids, completed.stderr)
    assert set(ids.values()) == {copies}
    assert not any(b"hunter2" in body or b"4111 1111" in body for body in bodies)
    assert ("gets each security event twice" in completed.stderr) is (copies == 2)


def test_a_scrubbed_value_keeps_within_the_value_limit_where_masks_are_longer_than_secrets() -> None:
    from sqreen_otel._config import MAX_VALUE_LENGTH

    note = "password=x " * (MAX_VALUE_LENGTH // 11)  # each 1-character secret becomes a mask
    with make_otel() as otel:
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.identify({"email": "ann@example.com"}, traits={"note": note})
            sqreen_otel.track("noted", properties={"note": note})
        (exported,) = otel.exported()
        (request,) = otel.app_spans()
    copies = [
        dict(request.attributes or {})["sqreen.traits.note"],
        *(
            dict(event.attributes or {})["sqreen.properties.note"]
            for event in request.events
            if event.name == "noted"
        ),
        *(
            dict(event.attributes or {})["sqreen.properties.note"]
            for event in exported.events
            if event.name == "noted"
        ),
    ]
    assert len(copies) == 3
    for copy in copies:
        assert isinstance(copy, str) and len(copy) <= MAX_VALUE_LENGTH
        assert "password=x" not in copy and MASK in copy


@pytest.mark.parametrize(("first", "then"), [("span", "logs"), ("logs", "span"), ("logs", "both")])
def test_switching_the_signal_mid_request_loses_no_event(logs: LogCapture, first: str, then: str) -> None:
    with make_otel() as otel:
        configure_signal(otel, first, logs)
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("before")
            configure_signal(otel, then, logs)
            sqreen_otel.track("after")
        (exported,) = otel.exported()
    assert sorted(event.name for event in exported.events if ours(event)) == ["after", "before"]


def test_events_in_a_span_of_a_provider_without_our_processor_still_ship(otel: Otel) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    other = TracerProvider(shutdown_on_exit=False)  # the app's instrumentation uses another provider
    with other.get_tracer("job").start_as_current_span("nightly.job") as job:
        sqreen_otel.track("job.event")
    (carrier,) = otel.exported()
    assert carrier.name == "sqreen.events" and [e.name for e in carrier.events] == ["job.event"]
    assert dict(carrier.attributes or {})["sqreen.carrier.reason"] == "other_provider"
    assert carrier.parent is not None and carrier.parent.span_id == job.get_span_context().span_id


def test_carriers_and_event_names_reach_the_apps_exporters_scrubbed() -> None:
    """A request with no server span: our carrier (sampled by the app's sampler) copies the
    request's fields from its environ; the app's exporter gets them scrubbed, and event names."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sqreen_otel.track("card 4111111111111111 charged")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with make_otel() as otel:
        Client(SqreenMiddleware(app)).get(
            "/pay?password=hunter2&card=4111111111111111", headers={"User-Agent": "bot token=hunter2"}
        )
        assert sqreen_otel.flush(5)
        (carrier,) = otel.app_spans()  # the app's own exporter, sampled by its sampler
    text = repr(dict(carrier.attributes or {})) + repr(
        [(e.name, dict(e.attributes or {})) for e in carrier.events]
    )
    assert "hunter2" not in text and "4111111111111111" not in text
    assert [e.name for e in carrier.events] == [f"card {MASK} charged"]


def test_our_log_messages_never_carry_a_secret_from_an_event_name(
    sqreen_logs: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    sqreen_otel.track("sq.reset password=hunter2")  # a reserved name: warned about
    sqreen_otel.configure(tracer_provider=NoOpTracerProvider())
    sqreen_otel.track("reset password=hunter2 card 4111111111111111")  # lost: warned about
    messages = " ".join(record.getMessage() for record in sqreen_logs.records)
    assert "reserved" in messages and "no OpenTelemetry SDK tracer provider" in messages
    assert "hunter2" not in messages and "4111111111111111" not in messages
