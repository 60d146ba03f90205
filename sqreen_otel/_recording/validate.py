"""Validation and normalisation of what application code hands us.

Wrong argument *types* are programming errors and raise ``TypeError`` naming the argument.
Everything else is coerced into something OpenTelemetry (and OTLP) accepts, within the
documented limits of docs/events.md, with one rate-limited warning per distinct problem.
Nothing here mutates the caller's objects; the results are fresh dicts and tuples.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from sqreen_otel import _schema
from sqreen_otel._config import (
    MAX_FLATTENED_PROPERTIES,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_NESTING_DEPTH,
    MAX_SEQUENCE_ITEMS,
    MAX_USER_IDENTIFIERS,
    MAX_VALUE_LENGTH,
)
from sqreen_otel._log import warn_once
from sqreen_otel._stats import stats

Scalar: TypeAlias = str | bool | int | float
AttributeValue: TypeAlias = Scalar | tuple[str, ...] | tuple[bool, ...] | tuple[int, ...] | tuple[float, ...]


class SupportsItems(Protocol):
    """Anything with ``items()`` yielding (key, value) pairs (werkzeug ``Headers``...)."""

    def items(self) -> Iterable[tuple[Any, Any]]: ...


#: What the API takes as properties, identifiers and traits (see ``check_mapping``).
MappingLike: TypeAlias = Mapping[Any, Any] | SupportsItems | Sequence[tuple[str, Any]]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_SCALAR_TYPES = (str, bool, int, float)


class ArgumentTypeError(TypeError):
    """A wrong argument type: the one exception the SDK lets reach application code."""


def _type_name(value: object) -> str:
    return type(value).__name__


def check_event_name(name: object, where: str) -> str:
    """The event name, scrubbed (a name is data too: it reaches host spans, exports and our
    own log messages), or ``TypeError``; over-long names are truncated."""
    if not isinstance(name, str) or not name:
        got = "an empty str" if isinstance(name, str) else _type_name(name)
        raise ArgumentTypeError(f"{where}: name must be a non-empty str, got {got}")
    from sqreen_otel._config import current_config
    from sqreen_otel._scrubbing.scrubber import scrubber_for

    clean = scrubber_for(current_config()).scrub_text(clean_str(name, MAX_NAME_LENGTH))
    if len(name) > MAX_NAME_LENGTH:
        warn_once(
            ("name", clean[:64]),
            "Event name %r... was truncated to %d characters.",
            clean[:64],
            MAX_NAME_LENGTH,
        )
    return clean


def check_mapping(value: object, argument: str, where: str) -> Mapping[Any, Any] | None:
    """``value`` as a mapping, or None; else ``TypeError`` naming ``argument``.

    Besides ``Mapping``s, takes the shapes request data really comes in: objects with
    ``items()`` (werkzeug ``Headers``), multi-value dicts (werkzeug ``MultiDict``, Django
    ``QueryDict``: every value kept) and lists of ``(key, value)`` pairs
    (``list(request.form.items())``). Never mutates ``value``.
    """
    if value is None or type(value) is dict:
        return value
    if isinstance(value, list | tuple) and not value:
        return {}  # no pairs: list(request.form.items()) of an empty form
    mapping = as_mapping(value)
    if mapping is not None:
        return mapping
    raise ArgumentTypeError(f"{where}: {argument} must be a mapping or None, got {_type_name(value)}")


def _is_pair(item: object) -> bool:
    return isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str | bytes)


def _collect(pairs: Iterable[Any]) -> dict[Any, Any] | None:
    """A dict from (key, value) pairs, a repeated key's values gathered in a list; None if not pairs.

    Byte-string keys (ASGI headers) are decoded as UTF-8 with replacement."""
    result: dict[Any, Any] = {}
    repeated: set[Any] = set()
    for item in pairs:
        if not _is_pair(item):
            return None
        key, value = item
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if key in result:
            if key not in repeated:
                result[key] = [result[key]]
                repeated.add(key)
            result[key].append(value)
        else:
            result[key] = value
    return result


def as_mapping(value: object) -> Mapping[Any, Any] | None:
    """``value`` seen as a mapping (see ``check_mapping``), or None if it is not mapping-like."""
    try:
        lists = getattr(value, "lists", None)
        if isinstance(value, Mapping) and callable(lists):  # MultiDict, QueryDict: every value
            return {key: values[0] if len(values) == 1 else list(values) for key, values in lists()}
        if isinstance(value, Mapping):
            return value
        if isinstance(value, list | tuple) and value and all(_is_pair(item) for item in value):
            return _collect(value)
        items = getattr(value, "items", None)
        if callable(items) and not isinstance(value, type):  # werkzeug Headers and the like
            return _collect(items())
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {field.name: getattr(value, field.name, None) for field in dataclasses.fields(value)}
    except Exception:  # noqa: BLE001 - a hostile container must not reach the host
        return None
    return None


def check_bool(value: object, argument: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ArgumentTypeError(f"{where}: {argument} must be a bool, got {_type_name(value)}")


def timestamp_ns(value: object, where: str, event_name: str) -> int | None:
    """Nanoseconds since the epoch of a ``datetime``; a naive one is taken as UTC.

    None (the time of the call is used, counted and warned about) for a time OpenTelemetry
    cannot carry: before 1970 or from 2262 on (past a signed 64-bit count of nanoseconds).
    """
    if not isinstance(value, dt.datetime):
        raise ArgumentTypeError(f"{where}: timestamp must be a datetime.datetime, got {_type_name(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        warn_once(("naive_timestamp", event_name), "Event %r: naive timestamp taken as UTC.", event_name)
        value = value.replace(tzinfo=dt.timezone.utc)
    try:
        nanos = (value - _EPOCH) // dt.timedelta(microseconds=1) * 1000
    except OverflowError:  # an offset pushing it past datetime's own range
        nanos = -1
    if not 0 <= nanos < _INT64_MAX:
        stats.add("timestamps_out_of_range")
        warn_once(
            ("timestamp_range", event_name),
            "Event %r: a timestamp before 1970 or from 2262 on cannot be recorded; the time of the "
            "call is used instead.",
            event_name,
        )
        return None
    return nanos


def clean_str(value: str, limit: int) -> str:
    """Truncate to ``limit`` characters and make the text valid UTF-8 (lone surrogates replaced)."""
    if len(value) > limit:
        value = value[:limit]
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def valid_text(value: str) -> str:
    """``value`` as valid UTF-8 text (lone surrogates replaced: no exporter could encode them)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not reach the host
        return f"<unrepresentable {_type_name(value)}>"


def _key_str(key: object) -> str | None:
    if isinstance(key, str):
        text = key
    elif isinstance(key, bool | int | float):
        text = str(key)
    else:
        text = _safe_str(key)
    text = clean_str(text, MAX_VALUE_LENGTH)  # cut to MAX_KEY_LENGTH where stored (value redacted)
    return text or None


def _sort_items(mapping: Mapping[Any, Any]) -> tuple[list[tuple[str, Any]], int]:
    """Items with clean string keys, sorted by key, and how many were unusable.

    ``None`` values are left out before any limit applies (they are not counted as dropped);
    empty keys, and every item of a mapping whose ``items()`` fails, are counted as dropped.
    """
    try:
        source = list(mapping.items())
    except Exception:  # noqa: BLE001 - a broken custom Mapping must not reach the host
        return [], 1
    items: list[tuple[str, Any]] = []
    unusable = 0
    for key, value in source:
        if value is None:
            continue
        text = _key_str(key)
        if text is None:
            unusable += 1
        else:
            items.append((text, value))
    items.sort(key=lambda item: item[0])
    return items, unusable


def _scalar(value: Any) -> Scalar | None:
    """The attribute form of a scalar-like value, or None if it is not scalar-like."""
    kind = type(value)
    if kind is str:
        return clean_str(value, MAX_VALUE_LENGTH)
    if kind is bool:
        return value  # type: ignore[no-any-return]
    if kind is float:
        return value if math.isfinite(value) else _non_finite(value)
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        number = int(value)
        return number if _INT64_MIN <= number <= _INT64_MAX else str(number)
    if isinstance(value, float):
        real = float(value)
        return real if math.isfinite(real) else _non_finite(real)
    if isinstance(value, str):
        return clean_str(str.__str__(value), MAX_VALUE_LENGTH)
    if isinstance(value, bytes | bytearray | memoryview):
        return clean_str(bytes(value).decode("utf-8", "replace"), MAX_VALUE_LENGTH)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return None


def _non_finite(value: float) -> str:
    """NaN and infinities are not JSON: they are kept as the text ``NaN``, ``Infinity``, ``-Infinity``."""
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _homogeneous(items: list[Any]) -> tuple[Any, ...] | None:
    """A tuple OpenTelemetry accepts (all str, all bool, all int, or all float), else None."""
    if not items:
        return ()
    kind = type(items[0])
    if kind not in _SCALAR_TYPES or any(type(item) is not kind for item in items):
        return None
    if kind is str:
        return tuple(clean_str(item, MAX_VALUE_LENGTH) for item in items)
    if kind is int and any(not _INT64_MIN <= item <= _INT64_MAX for item in items):
        return None
    if kind is float and not all(math.isfinite(item) for item in items):
        return tuple(repr(item) if math.isfinite(item) else _non_finite(item) for item in items)
    return tuple(items)


class _Flattener:
    """Flattens nested mappings and sequences into dotted keys, within the limits.

    A container nested deeper than ``MAX_NESTING_DEPTH`` is dropped (counted), not turned into
    text: its keys would then escape the scrubber's key rule.
    """

    def __init__(self) -> None:
        self.out: dict[str, AttributeValue] = {}
        self.dropped = 0
        self.truncated = False
        self.too_deep = False

    def add(self, key: str, value: Any, depth: int) -> None:
        if value is None:
            return
        scalar = _scalar(value)
        if scalar is not None:
            self._put(key, scalar)
            return
        mapping = as_mapping(value)
        if mapping is not None:
            if depth >= MAX_NESTING_DEPTH:
                self._drop_deep()
                return
            sub_items, unusable = _sort_items(mapping)
            self.dropped += unusable
            for sub_key, sub_value in sub_items:
                self.add(f"{key}.{sub_key}", sub_value, depth + 1)
            return
        if isinstance(value, list | tuple | set | frozenset):
            self._sequence(key, value, depth)
            return
        self._put(key, clean_str(_safe_str(value), MAX_VALUE_LENGTH))

    def _drop_deep(self) -> None:
        self.dropped += 1
        self.too_deep = True

    def _sequence(self, key: str, value: Iterable[Any], depth: int) -> None:
        items = list(value)
        if isinstance(value, set | frozenset):
            try:
                items.sort()
            except TypeError:
                items.sort(key=_safe_str)
        if len(items) > MAX_SEQUENCE_ITEMS:
            items = items[:MAX_SEQUENCE_ITEMS]
            self.truncated = True
        kept = _homogeneous(items)
        if kept is not None:
            self._put(key, kept)
            return
        if depth >= MAX_NESTING_DEPTH:
            self._drop_deep()
            return
        for index, item in enumerate(items):
            self.add(f"{key}.{index}", item, depth + 1)

    def _put(self, key: str, value: AttributeValue) -> None:
        if len(key) > MAX_KEY_LENGTH:
            # The cut may remove what makes the key sensitive (``<long parent>.password``): the
            # value is not kept under a key the scrubber could no longer judge.
            key = key[:MAX_KEY_LENGTH]
            value = _schema.REDACTED
            self.truncated = True
        if key in self.out:
            self.dropped += 1
            return
        if len(self.out) >= MAX_FLATTENED_PROPERTIES:
            self.dropped += 1
            return
        self.out[key] = value


def _flat_and_clean(properties: Mapping[Any, Any], max_properties: int) -> dict[str, AttributeValue] | None:
    """The common case, cheaply: a copy if every key is a short ASCII str and every value a plain
    scalar within the limits; None sends anything else through the general path."""
    if type(properties) is not dict or len(properties) > max_properties:
        return None
    for key, value in properties.items():
        if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
            return None
        kind = type(value)
        if kind is str:
            if len(value) > MAX_VALUE_LENGTH or not value.isascii():
                return None
        elif kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                return None
        elif kind is float:
            if value - value != 0.0:  # NaN or an infinity: the general path spells them out
                return None
        elif kind is not bool:
            return None
    return dict(properties)


def normalize_properties(
    properties: Mapping[Any, Any] | None, max_properties: int, event_name: str
) -> tuple[dict[str, AttributeValue], int]:
    """Flattened properties and how many were dropped.

    Keeps the first ``max_properties`` top-level keys in sorted order (Sqreen's rule), then
    flattens nested values to ``MAX_NESTING_DEPTH`` levels and ``MAX_FLATTENED_PROPERTIES``
    attributes. ``None`` values are left out on purpose and are not counted as dropped.
    """
    if not properties:
        return {}, 0
    flat = _flat_and_clean(properties, max_properties)
    if flat is not None:
        return flat, 0
    items, dropped = _sort_items(properties)
    if len(items) > max_properties:
        dropped += len(items) - max_properties
        items = items[:max_properties]
        warn_once(
            ("too_many_properties", event_name),
            "Event %r has more than %d properties; kept the first %d keys in sorted order.",
            event_name,
            max_properties,
            max_properties,
        )
    flattener = _Flattener()
    for key, value in items:
        flattener.add(key, value, 1)
    if flattener.dropped:
        warn_once(
            ("flattened_overflow", event_name),
            "Event %r: nested properties exceed %d attributes or collide; extra ones dropped.",
            event_name,
            MAX_FLATTENED_PROPERTIES,
        )
    if flattener.too_deep:
        warn_once(
            ("too_deep", event_name),
            "Event %r: values nested deeper than %d levels were dropped (their keys could not be scrubbed).",
            event_name,
            MAX_NESTING_DEPTH,
        )
    if flattener.truncated:
        warn_once(
            ("truncated", event_name),
            "Event %r: over-long property keys (their values redacted) or lists were truncated.",
            event_name,
        )
    return flattener.out, dropped + flattener.dropped


def normalize_identifiers(identifiers: Mapping[Any, Any] | None, event_name: str) -> dict[str, Scalar]:
    """Flat user identifiers: scalar values kept, anything else ``str()``-ed, ``None`` left out."""
    if not identifiers:
        return {}
    items, _ = _sort_items(identifiers)
    if len(items) > MAX_USER_IDENTIFIERS:
        warn_once(
            ("too_many_identifiers", event_name),
            "Event %r has more than %d user identifiers; kept the first %d keys in sorted order.",
            event_name,
            MAX_USER_IDENTIFIERS,
            MAX_USER_IDENTIFIERS,
        )
        items = items[:MAX_USER_IDENTIFIERS]
    result: dict[str, Scalar] = {}
    for key, value in items:
        if len(key) > MAX_KEY_LENGTH:
            result[key[:MAX_KEY_LENGTH]] = _schema.REDACTED  # see _Flattener._put
            continue
        scalar = _scalar(value)
        result[key] = scalar if scalar is not None else clean_str(_safe_str(value), MAX_VALUE_LENGTH)
    return result
