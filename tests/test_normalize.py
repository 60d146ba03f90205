"""Bad input has a documented outcome (docs/events.md, "Limits and coercions")."""

from __future__ import annotations

import datetime as dt
import enum
import logging

import pytest
from _support import Otel, events_of
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._config import (
    MAX_FLATTENED_PROPERTIES,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SEQUENCE_ITEMS,
    MAX_USER_IDENTIFIERS,
    MAX_VALUE_LENGTH,
)
from sqreen_otel._recording.validate import (
    MappingLike,
    check_mapping,
    normalize_identifiers,
    normalize_properties,
    timestamp_ns,
)
from sqreen_otel._schema import REDACTED


def props(values: MappingLike, limit: int = 16) -> dict[str, object]:
    return dict(normalize_properties(check_mapping(values, "properties", "test"), limit, "test")[0])


def test_more_than_the_limit_keeps_the_first_keys_in_sorted_order_and_counts_the_rest() -> None:
    values = {f"k{i:02d}": i for i in range(20)}
    kept, dropped = normalize_properties(dict(reversed(values.items())), 16, "e")
    assert list(kept) == [f"k{i:02d}" for i in range(16)]
    assert dropped == 4


def test_the_property_limit_is_configurable(otel: Otel) -> None:
    sqreen_otel.configure(tracer_provider=otel.provider, exporter=otel.ours, max_event_properties=2)
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track("e", properties={"c": 3, "a": 1, "b": 2})
    ((_, attributes),) = events_of(otel.app_spans()[0])
    assert attributes["sqreen.properties.a"] == 1
    assert attributes["sqreen.properties.b"] == 2
    assert "sqreen.properties.c" not in attributes
    assert attributes["sqreen.event.dropped_properties"] == 1


def test_nested_mappings_flatten_with_dotted_keys_to_a_bounded_depth() -> None:
    deep = {"a": {"b": {"c": {"d": {"e": "too deep"}}}}}
    assert props({"user": {"plan": "pro", "address": {"city": "Paris"}}}) == {
        "user.address.city": "Paris",
        "user.plan": "pro",
    }
    kept, dropped = normalize_properties({**deep, "ok": 1, "l": [[[[["x"], 1]]]]}, 16, "e")
    assert kept == {"ok": 1}  # deeper containers are dropped, never stringified past the key rule
    assert dropped == 2


def test_sequences_are_kept_when_opentelemetry_accepts_them_else_flattened() -> None:
    assert props({"tags": ["a", "b"], "ids": (1, 2), "flags": [True], "empty": []}) == {
        "empty": (),
        "flags": (True,),
        "ids": (1, 2),
        "tags": ("a", "b"),
    }
    assert props({"mixed": [1, "a", {"password": "x"}]}) == {
        "mixed.0": 1,
        "mixed.1": "a",
        "mixed.2.password": "x",
    }
    assert len(props({"many": list(range(100))})["many"]) == MAX_SEQUENCE_ITEMS  # type: ignore[arg-type]


class Color(enum.Enum):
    RED = "red"


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_of_other_types_are_coerced_none_is_dropped() -> None:
    out = props(
        {
            "none": None,
            "when": dt.datetime(2024, 1, 2, 3, 4, 5),
            "day": dt.date(2024, 1, 2),
            "color": Color.RED,
            "raw": b"caf\xc3\xa9",
            "bad_bytes": b"\xff",
            "huge": 2**70,
            "hostile": Hostile(),
            "float": 1.5,
        }
    )
    assert "none" not in out
    assert out["when"] == "2024-01-02T03:04:05"
    assert out["day"] == "2024-01-02"
    assert out["color"] == "Color.RED"
    assert out["raw"] == "café"
    assert out["bad_bytes"] == "\ufffd"
    assert out["huge"] == str(2**70)  # beyond OTLP's int64: kept as text, not rejected by the exporter
    assert out["hostile"] == "<unrepresentable Hostile>"
    assert out["float"] == 1.5


def test_keys_are_made_strings_and_empty_ones_dropped() -> None:
    kept, dropped = normalize_properties({1: "one", ("t",): "tuple", "": "empty", None: "none"}, 16, "e")
    assert kept == {"1": "one", "('t',)": "tuple", "None": "none"}
    assert dropped == 1


def test_oversize_names_keys_and_values_are_truncated_at_documented_limits(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track("n" * 1000, properties={"k" * 1000: "v", "value": "v" * 100_000})
        sqreen_otel.track("nested", properties={"a" * 121: {"password": "hunter2"}})
    (first, nested) = events_of(otel.app_spans()[0])
    name, attributes = first
    assert name == "n" * MAX_NAME_LENGTH
    assert attributes["sqreen.properties.value"] == "v" * MAX_VALUE_LENGTH
    # A key cut to the limit may have lost what made it sensitive: its value is not kept.
    assert attributes["sqreen.properties." + "k" * MAX_KEY_LENGTH] == REDACTED
    ((key, value),) = [(k, v) for k, v in nested[1].items() if k.startswith("sqreen.properties.")]
    assert key == "sqreen.properties." + ("a" * 121 + ".password")[:MAX_KEY_LENGTH]
    assert value == REDACTED


def test_flattening_is_bounded_and_counts_what_it_drops() -> None:
    wide = {f"k{i}": {f"s{j}": j for j in range(10)} for i in range(16)}
    kept, dropped = normalize_properties(wide, 16, "e")
    assert len(kept) == MAX_FLATTENED_PROPERTIES
    assert dropped == 16 * 10 - MAX_FLATTENED_PROPERTIES


def test_lone_surrogates_become_valid_utf8() -> None:
    out = props({"s": "a\ud800b", "k\udfff": 1})
    assert out == {"s": "a?b", "k?": 1}
    for key, value in out.items():
        key.encode("utf-8")
        if isinstance(value, str):
            value.encode("utf-8")


def test_identifiers_are_flat_and_bounded() -> None:
    ids = normalize_identifiers(
        {"uid": 1, "org": {"id": 2}, "none": None, **{f"x{i}": i for i in range(30)}}, "e"
    )
    assert len(ids) == MAX_USER_IDENTIFIERS
    assert "none" not in ids
    assert normalize_identifiers({"org": {"id": 2}}, "e") == {"org": "{'id': 2}"}


def test_naive_datetimes_are_taken_as_utc_with_one_log(sqreen_logs: pytest.LogCaptureFixture) -> None:
    naive = dt.datetime(2024, 1, 1, 12, 0, 0)
    aware = naive.replace(tzinfo=dt.timezone.utc)
    paris = dt.datetime(2024, 1, 1, 13, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert timestamp_ns(naive, "w", "e") == timestamp_ns(aware, "w", "e") == timestamp_ns(paris, "w", "e")
    timestamp_ns(naive, "w", "e")
    logs = [r for r in sqreen_logs.records if "naive timestamp" in r.getMessage()]
    assert len(logs) == 1
    assert logs[0].levelno == logging.WARNING


def test_a_problem_is_logged_once_not_per_call(otel: Otel, sqreen_logs: pytest.LogCaptureFixture) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        for _ in range(50):
            sqreen_otel.track("wide", properties={f"k{i}": i for i in range(20)})
    messages = [r.getMessage() for r in sqreen_logs.records]
    assert sum("more than 16 properties" in m for m in messages) == 1
    assert len(otel.app_spans()[0].events) == 50


def test_secret_values_never_appear_in_logs(otel: Otel, sqreen_logs: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-SECRET-VALUE"
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track("login", properties={f"password{i}": secret for i in range(40)})
        sqreen_otel.track("login", properties={"password": secret * 1000}, timestamp=dt.datetime(2020, 1, 1))
        sqreen_otel.identify({"uid": secret})
        sqreen_otel.identify({"uid": "someone-else"})
        sqreen_otel.track("x", user_identifiers={"uid": secret + "2"})
    assert sqreen_logs.records, "the calls above are expected to log warnings"
    assert all(secret not in record.getMessage() for record in sqreen_logs.records)


def test_request_data_in_the_shapes_apps_pass_is_read_as_mappings() -> None:
    from werkzeug.datastructures import Headers, ImmutableMultiDict, MultiDict

    form = MultiDict([("user", "ann"), ("tag", "a"), ("tag", "b")])
    assert props({"form": form}) == {"form.tag": ("a", "b"), "form.user": "ann"}  # every value kept
    assert props({"form": ImmutableMultiDict(form)}) == {"form.tag": ("a", "b"), "form.user": "ann"}
    assert props({"pairs": list(form.items(multi=True))}) == {"pairs.tag": ("a", "b"), "pairs.user": "ann"}
    headers = Headers([("Cookie", "sid=1"), ("X-Auth-Key", "k")])
    assert props({"headers": headers}) == {"headers.Cookie": "sid=1", "headers.X-Auth-Key": "k"}
    assert props(headers) == {"Cookie": "sid=1", "X-Auth-Key": "k"}  # top level too
    assert list(form.items(multi=True)) == [("user", "ann"), ("tag", "a"), ("tag", "b")]  # not mutated


def test_top_level_request_data_is_accepted_by_the_api(otel: Otel) -> None:
    from werkzeug.datastructures import Headers

    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        assert sqreen_otel.track("form", properties=[("user", "ann"), ("plan", "pro")])
        sqreen_otel.from_context().track_event("headers").with_properties(Headers([("Accept", "x")]))
        sqreen_otel.from_context().for_user([("uid", "u1")]).track_auth_success()
    by_name = dict(events_of(otel.app_spans()[0]))
    assert by_name["form"]["sqreen.properties.plan"] == "pro"
    assert by_name["headers"]["sqreen.properties.Accept"] == "x"
    assert by_name["users.login.success"]["sqreen.user.uid"] == "u1"


def test_empty_request_data_is_an_empty_event(otel: Otel) -> None:
    from werkzeug.datastructures import MultiDict

    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        assert sqreen_otel.track("empty.form", properties=list(MultiDict().items()))
        assert sqreen_otel.track("empty.tuple", properties=())
        sqreen_otel.from_context().track_event("empty.builder").with_properties([])
    assert [name for name, _ in events_of(otel.app_spans()[0])] == [
        "empty.form",
        "empty.tuple",
        "empty.builder",
    ]


def test_asgi_style_byte_pairs_are_read_as_mappings() -> None:
    assert props({"h": [(b"x-api-key", b"k")]}) == {"h.x-api-key": "k"}


def test_non_finite_numbers_become_documented_strings() -> None:
    out = props(
        {"nan": float("nan"), "inf": float("inf"), "ninf": -float("inf"), "mixed": [1.5, float("nan")]}
    )
    assert out == {"inf": "Infinity", "mixed": ("1.5", "NaN"), "nan": "NaN", "ninf": "-Infinity"}


def test_dataclasses_are_read_field_by_field() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Login:
        user: str
        password: str

    assert props({"login": Login("ann", "x")}) == {"login.password": "x", "login.user": "ann"}
