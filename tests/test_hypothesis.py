"""Property-based: nothing escapes but the documented TypeErrors; limits always hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from _support import Otel, make_otel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import Event
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

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
LONG_TEXT = st.one_of(ANY_TEXT, st.builds(lambda s, n: s * n, ANY_TEXT, st.integers(1, 50)))


class Weird:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def __str__(self) -> str:
        if self.fail:
            raise ValueError("boom")
        return "weird"


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    LONG_TEXT,
    st.binary(max_size=50),
    st.datetimes(),
    st.builds(Weird, st.booleans()),
)
KEYS = st.one_of(
    ANY_TEXT, st.integers(), st.none(), st.tuples(st.integers()), st.builds(Weird, st.booleans())
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=40),
        st.tuples(children, children),
        st.dictionaries(KEYS, children, max_size=8),
    ),
    max_leaves=60,
)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=30)
ANYTHING = st.one_of(st.none(), st.integers(), ANY_TEXT, st.lists(st.integers(), max_size=3), MAPPINGS)
NAMES = st.one_of(LONG_TEXT, st.integers(), st.none(), st.binary(max_size=5))
TIMESTAMPS = st.one_of(st.none(), st.datetimes(timezones=st.none() | st.timezones()), st.integers(), ANY_TEXT)


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and name != ""


def _valid_mapping(value: object) -> bool:
    """What the API documents as mapping-like (docs/events.md "Limits and coercions")."""
    if value is None or isinstance(value, Mapping):
        return True
    if isinstance(value, list | tuple):  # a list of (key, value) pairs; empty: no properties
        return all(
            isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str | bytes)
            for item in value
        )
    return callable(getattr(value, "items", None)) and not isinstance(value, type)


def _check_value(value: Any) -> None:
    if isinstance(value, tuple):
        assert len(value) <= MAX_SEQUENCE_ITEMS
        assert len({type(item) for item in value}) <= 1
        for item in value:
            _check_value(item)
        return
    assert type(value) in (str, bool, int, float)
    if isinstance(value, str):
        assert len(value) <= MAX_VALUE_LENGTH
        value.encode("utf-8")
    if type(value) is int:
        assert -(2**63) <= value < 2**63


def _check_event(event: Event) -> None:
    assert len(event.name) <= MAX_NAME_LENGTH
    attributes = dict(event.attributes or {})
    properties = [k for k in attributes if k.startswith("sqreen.properties.")]
    users = [k for k in attributes if k.startswith("sqreen.user.")]
    assert len(properties) <= MAX_FLATTENED_PROPERTIES
    assert len(users) <= MAX_USER_IDENTIFIERS
    for key, value in attributes.items():
        key.encode("utf-8")
        if key.startswith("sqreen.properties."):
            assert len(key) <= len("sqreen.properties.") + MAX_KEY_LENGTH
        _check_value(value)
    assert attributes["sqreen.event.type"] in ("track", "auth", "signup", "identify")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, properties=ANYTHING, identifiers=ANYTHING, timestamp=TIMESTAMPS)
def test_track_raises_only_documented_type_errors_and_respects_limits(
    name: object, properties: object, identifiers: object, timestamp: object
) -> None:
    with make_otel() as otel:
        _track_once(otel, name, properties, identifiers, timestamp)


def _track_once(otel: Otel, name: object, properties: object, identifiers: object, timestamp: object) -> None:
    well_typed = (
        _valid_name(name)
        and _valid_mapping(properties)
        and _valid_mapping(identifiers)
        and (timestamp is None or isinstance(timestamp, dt.datetime))
    )
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        try:
            track: Any = sqreen_otel.track  # deliberately called with ill-typed arguments
            result = track(name, properties=properties, user_identifiers=identifiers, timestamp=timestamp)
        except TypeError:
            assert not well_typed
            return
    assert well_typed
    (span,) = otel.app_spans()
    assert result is (not str(name).startswith("sq."))
    for event in span.events:
        _check_event(event)
    assert sqreen_otel.stats().get("internal_errors", 0) == 0


CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("with_properties"), ANYTHING),
        st.tuples(st.just("with_user_identifiers"), ANYTHING),
        st.tuples(st.just("with_timestamp"), TIMESTAMPS),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, identifiers=ANYTHING, calls=CALLS)
def test_builder_chains_yield_one_event_within_limits(
    name: object, identifiers: object, calls: list[Any]
) -> None:
    with make_otel() as otel:
        _chain_once(otel, name, identifiers, calls)


def _chain_once(otel: Otel, name: object, identifiers: object, calls: list[Any]) -> None:
    with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        try:
            user = sqreen_otel.from_context().for_user(identifiers)  # type: ignore[arg-type]
            event = user.track_event(name)  # type: ignore[arg-type]
        except TypeError:
            assert not (_valid_name(name) and isinstance(identifiers, Mapping))
            return
        for method, argument in calls:
            try:
                getattr(event, method)(argument)
            except TypeError:
                if method == "with_timestamp":
                    assert not isinstance(argument, dt.datetime)
                else:
                    assert not _valid_mapping(argument)
    (span,) = otel.app_spans()
    expected = 0 if str(name).startswith("sq.") else 1
    assert len(span.events) == expected
    for recorded in span.events:
        _check_event(recorded)
    assert sqreen_otel.stats().get("internal_errors", 0) == 0
