"""The SDK surface: both API shapes, one behaviour, on the request's local-root SERVER span."""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import logging
import threading
from collections.abc import Callable

import pytest
from _support import Otel, events_of, only
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel import TrackedEvent

WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
WHEN_NS = 1714979289123456000

OPTIONS: dict[str, Callable[[TrackedEvent], TrackedEvent]] = {
    "properties": lambda e: e.with_properties({"plan": "pro", "amount": 12}),
    "timestamp": lambda e: e.with_timestamp(WHEN),
    "identifiers": lambda e: e.with_user_identifiers({"uid": "u-7"}),
}


@pytest.mark.parametrize("order", list(itertools.permutations(OPTIONS)))
def test_one_final_event_whatever_the_order_of_with_calls(otel: Otel, order: tuple[str, ...]) -> None:
    with otel.tracer.start_as_current_span("GET /buy", kind=SpanKind.SERVER):
        event = sqreen_otel.from_context().track_event("purchase")
        for option in order:
            OPTIONS[option](event)
    (span,) = otel.app_spans()
    assert [e.name for e in span.events] == ["purchase"]
    assert span.events[0].timestamp == WHEN_NS
    assert events_of(span)[0][1] == {
        "sqreen.properties.plan": "pro",
        "sqreen.properties.amount": 12,
        "sqreen.user.uid": "u-7",
        "user.id": "u-7",
        "sqreen.event.user_source": "event",
        "sqreen.event.type": "track",
    }


def test_each_with_call_replaces_that_option(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        (
            sqreen_otel.from_context()
            .track_event("x")
            .with_properties({"a": 1})
            .with_user_identifiers({"uid": "first"})
            .with_properties({"b": 2})
            .with_user_identifiers({"email": "second@example.com"})
            .with_timestamp(WHEN - dt.timedelta(days=1))
            .with_timestamp(WHEN)
        )
    (span,) = otel.app_spans()
    (event,) = span.events
    attributes = dict(event.attributes or {})
    assert attributes["sqreen.properties.b"] == 2
    assert "sqreen.properties.a" not in attributes
    assert attributes["sqreen.user.email"] == "second@example.com"
    assert "sqreen.user.uid" not in attributes
    assert event.timestamp == WHEN_NS


def test_event_lands_on_local_root_server_span_not_the_current_child(otel: Otel) -> None:
    with (
        otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER),
        otel.tracer.start_as_current_span("db.query"),
    ):
        sqreen_otel.track("inside.child")
    spans = otel.app_spans()
    assert only(spans, "db.query").events == ()
    assert [e.name for e in only(spans, "GET /").events] == ["inside.child"]


def test_every_processor_sees_the_final_event_and_ours_exports_it(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.from_context().track_event("seen").with_properties({"k": "v"})
    (app_span,) = otel.app_spans()
    (our_span,) = otel.exported()
    assert events_of(app_span) == events_of(our_span)
    assert events_of(our_span)[0][1]["sqreen.properties.k"] == "v"


def test_for_user_shapes(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
        user = sqreen_otel.from_context().for_user({"uid": 42, "email": "ann@example.com"})
        user.track_auth_failure().track_auth(True).track_signup()
        user.track_event("profile.update").with_properties({"field": "bio"})
        user.identify()
    (span,) = otel.app_spans()
    names = [name for name, _ in events_of(span)]
    assert names == [
        "users.login.failure",
        "users.login.success",
        "users.signup",
        "profile.update",
        "sq.identify",
    ]
    failure = events_of(span)[0][1]
    assert failure["sqreen.auth.success"] is False
    assert failure["sqreen.event.type"] == "auth"
    assert failure["sqreen.user.uid"] == 42
    assert failure["user.id"] == "42"
    assert failure["user.email"] == "ann@example.com"
    assert events_of(span)[2][1]["sqreen.event.type"] == "signup"
    assert events_of(span)[4][1]["sqreen.event.type"] == "identify"
    assert dict(span.attributes or {})["user.id"] == "42"


def test_module_functions(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("POST /signup", kind=SpanKind.SERVER):
        assert sqreen_otel.signup_track(uid="new") is True
        assert sqreen_otel.auth_track(False, uid="mallory") is True
        assert sqreen_otel.track("card.added", properties={"brand": "visa"}, timestamp=WHEN) is True
    (span,) = otel.app_spans()
    assert [n for n, _ in events_of(span)] == [
        "sq.identify",
        "users.signup",
        "users.login.failure",
        "card.added",
    ]
    assert dict(span.attributes or {})["sqreen.user.uid"] == "new"
    # A failed login does not identify: the request stays attributed to the signed-up user.
    assert events_of(span)[3][1]["sqreen.user.uid"] == "new"
    assert events_of(span)[3][1]["sqreen.event.user_source"] == "identify"


def test_successful_auth_track_identifies(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
        sqreen_otel.track("before")
        assert sqreen_otel.auth_track(True, username="ann") is True
        sqreen_otel.track("after")
    (span,) = otel.app_spans()
    by_name = dict(events_of(span))
    assert "sqreen.user.username" not in by_name["before"]
    assert by_name["after"]["sqreen.user.username"] == "ann"
    assert by_name["after"]["user.name"] == "ann"
    assert dict(span.attributes or {})["user.name"] == "ann"


def test_identify_with_traits_and_later_attribution(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.identify({"uid": "u1"}, traits={"plan": "gold", "seats": 3})
        sqreen_otel.from_context().track_event("export.csv")
    (span,) = otel.app_spans()
    attributes = dict(span.attributes or {})
    assert attributes["sqreen.traits.plan"] == "gold"
    assert attributes["sqreen.traits.seats"] == 3
    assert events_of(span)[1][1]["sqreen.user.uid"] == "u1"


def test_event_identifiers_differing_from_identified_user_are_kept_with_one_warning(
    otel: Otel, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.identify({"uid": "alice"})
        for _ in range(3):
            sqreen_otel.track("transfer", user_identifiers={"uid": "bob"})
    (span,) = otel.app_spans()
    assert [a["sqreen.user.uid"] for n, a in events_of(span) if n == "transfer"] == ["bob"] * 3
    warnings = [r for r in sqreen_logs.records if "differ from identify()" in r.getMessage()]
    assert len(warnings) == 1


def test_reserved_prefix_is_ignored_with_a_warning(otel: Otel, sqreen_logs: pytest.LogCaptureFixture) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        assert sqreen_otel.track("sq.fake") is False
        builder = sqreen_otel.from_context().track_event("sq.other").with_properties({"a": 1})
        assert builder.recorded is False
    (span,) = otel.app_spans()
    assert span.events == ()
    assert sqreen_otel.stats()["events_ignored_reserved_name"] == 2
    assert any("reserved" in record.getMessage() for record in sqreen_logs.records)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: sqreen_otel.track(42), "name"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.track(""), "name"),
        (lambda: sqreen_otel.track("x", properties=[1, 2]), "properties"),  # type: ignore[list-item]
        (lambda: sqreen_otel.track("x", user_identifiers="bob"), "user_identifiers"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.track("x", timestamp="2024-01-01"), "timestamp"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.from_context().track_event(None), "name"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.from_context().track_event("x").with_properties("a=1"), "properties"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.from_context().track_event("x").with_timestamp(1.0), "timestamp"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.from_context().track_event("x").with_user_identifiers(7), "user_identifiers"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.from_context().for_user(["uid"]), "user_identifiers"),  # type: ignore[list-item]
        (lambda: sqreen_otel.from_context().for_user({}).track_auth("yes"), "success"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.auth_track(1, uid="u"), "success"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.identify("u1"), "user_identifiers"),  # type: ignore[arg-type]
        (lambda: sqreen_otel.identify({"u": 1}, traits=3), "traits"),  # type: ignore[arg-type]
    ],
)
def test_wrong_argument_types_raise_type_error_naming_the_argument(
    otel: Otel, call: Callable[[], object], argument: str
) -> None:
    with (
        otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER),
        pytest.raises(TypeError, match=argument),
    ):
        call()


def test_disabled_makes_every_call_a_no_op(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQREEN_DISABLE", "true")
    sqreen_otel.configure(tracer_provider=otel.provider)
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        assert sqreen_otel.track("x") is False
        assert sqreen_otel.auth_track(True, uid="u") is False
        assert sqreen_otel.signup_track(uid="u") is False
        sqreen_otel.identify({"uid": "u"})
        record = sqreen_otel.from_context()
        record.track_event("y").with_properties({"a": 1}).with_timestamp(WHEN)
        record.for_user({"uid": "u"}).track_auth_success().track_signup().identify()
    (span,) = otel.app_spans()
    assert span.events == ()
    assert "user.id" not in (span.attributes or {})


def test_explicit_context_and_copied_context_reach_the_request_from_worker_threads(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        captured = otel_context.get_current()
        copied = contextvars.copy_context()
        workers = [
            threading.Thread(target=lambda: sqreen_otel.from_context(captured).track_event("via.ctx")),
            threading.Thread(target=lambda: copied.run(sqreen_otel.track, "via.copy")),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    (span,) = otel.app_spans()
    assert sorted(n for n, _ in events_of(span)) == ["via.copy", "via.ctx"]


def test_caller_data_is_never_mutated(otel: Otel) -> None:
    properties = {"b": {"nested": [1, 2, {"deep": None}]}, "a": None, 3: "int key", "s": "x" * 10_000}
    identifiers = {"uid": 1, "obj": object()}
    snapshot = repr(properties), repr(identifiers)
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track("x", properties=properties, user_identifiers=identifiers)
        sqreen_otel.from_context().track_event("y").with_properties(properties).with_user_identifiers(
            identifiers
        )
        sqreen_otel.identify(identifiers, traits=properties)
    assert (repr(properties), repr(identifiers)) == snapshot


def test_the_library_does_not_configure_host_logging(otel: Otel) -> None:
    root_handlers = list(logging.getLogger().handlers)
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track("sq.reserved")
        sqreen_otel.track("x", timestamp=dt.datetime(2020, 1, 1))
    library_logger = logging.getLogger("sqreen_otel")
    assert library_logger.handlers == []
    assert library_logger.level == logging.NOTSET
    assert logging.getLogger().handlers == root_handlers


def test_log_level_setting_applies_to_the_library_logger_only(otel: Otel) -> None:
    root_level = logging.getLogger().level
    try:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter=otel.ours, log_level="error")
        assert logging.getLogger("sqreen_otel").level == logging.ERROR
        assert logging.getLogger().level == root_level
    finally:
        logging.getLogger("sqreen_otel").setLevel(logging.NOTSET)


def test_identify_without_identifiers_does_not_claim_the_request(
    otel: Otel, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
        assert sqreen_otel.auth_track(True) is True  # the login event is kept, with no user
        sqreen_otel.identify({})
        sqreen_otel.identify({"uid": "real"})
        sqreen_otel.track("after")
    (span,) = otel.app_spans()
    assert [n for n, _ in events_of(span)] == ["users.login.success", "sq.identify", "after"]
    assert events_of(span)[2][1]["sqreen.user.uid"] == "real"
    assert any("no user identifiers given" in r.getMessage() for r in sqreen_logs.records)
