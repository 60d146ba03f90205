"""``LiveEvent``: one span event per tracked call, refined until its span ends.

OpenTelemetry freezes the attributes of a span event when it is added, but the Sqreen API
describes an event over several calls (``track_event(name).with_properties(...)
.with_timestamp(...)``) with no terminating call. So we put *one* event object on the span at
the first call and let the ``with_*`` calls refine it. It becomes final when its span ends:
our processor finalises the events of every ending span in ``_on_ending``, before any
processor's ``on_end``, so every processor and exporter sees the same single event with the
final values. (Without our processor, it becomes final the first time it is read after the
span ended.) A ``with_*`` call after that is ignored with a warning: the event was handed on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from opentelemetry.sdk.trace import Event, ReadableSpan

from sqreen_otel import _fork, _schema
from sqreen_otel._config import MAX_VALUE_LENGTH, Config
from sqreen_otel._recording.validate import AttributeValue, Scalar
from sqreen_otel._scrubbing.pseudonym import pseudonym
from sqreen_otel._scrubbing.scrubber import Scrubber
from sqreen_otel._sdk_bridge import set_event_timestamp

# One lock for every event's tiny update/finalise sections: cheaper than one per event, and
# contention is negligible (a few dict assignments under it).
_LOCK = threading.Lock()


def _reinit_lock() -> None:
    global _LOCK  # noqa: PLW0603 - replaced in a forked child
    _LOCK = threading.Lock()


_fork.in_child(_reinit_lock)


class UserView(NamedTuple):
    """How user identifiers appear in one place: shown or not, pseudonymised with a key or raw."""

    shown: bool
    key: bytes | None = None


HIDDEN = UserView(False)
RAW = UserView(True)


def user_views(config: Config) -> tuple[UserView, UserView]:
    """(on the host's spans, in what our exporters ship) under ``config``.

    With ``SQREEN_USER_ID_HMAC_KEY`` both carry pseudonyms; ``SQREEN_USER_ON_HOST_SPANS=false``
    hides them from host spans; an invalid key (fail closed) hides them everywhere.
    """
    if config.withhold_user_identifiers:
        return HIDDEN, HIDDEN
    ours = UserView(True, config.user_id_hmac_key.encode()) if config.user_id_hmac_key else RAW
    return (ours if config.user_on_host_spans else HIDDEN), ours


def identity_attributes(
    identifiers: Mapping[str, Scalar],
    traits: Mapping[str, AttributeValue],
    view: UserView,
    scrubber: Scrubber,
) -> dict[str, AttributeValue]:
    """The span attributes of an identified user, scrubbed: ``user_attributes``, and
    ``sqreen.traits.<key>`` when identifiers are shown raw (traits cannot be pseudonymised)."""
    attributes = user_attributes(identifiers, view)
    if view is RAW or (view.shown and view.key is None):
        attributes.update({_schema.TRAITS_PREFIX + key: value for key, value in traits.items()})
    return {
        key: _truncated(value, MAX_VALUE_LENGTH)
        for key, value in scrubber.scrub_attributes(attributes).items()
    }


def user_attributes(identifiers: Mapping[str, Scalar], view: UserView) -> dict[str, AttributeValue]:
    """``sqreen.user.<key>`` for every identifier, plus ``user.id``/``user.email``/``user.name``;
    pseudonymised (``user.hash`` for the semantic-convention ones) with a key; none if hidden."""
    if not view.shown:
        return {}
    out: dict[str, AttributeValue] = {}
    semconv: dict[str, str] = {}
    key = view.key
    for name, value in identifiers.items():
        out[_schema.USER_PREFIX + name] = value if key is None else pseudonym(key, value)
        target = _schema.SEMCONV_USER_KEYS.get(name.lower())
        if target is not None and target not in semconv:
            semconv[target] = value if isinstance(value, str) else str(value)
    if key is None:
        out.update(semconv)
    elif semconv:
        first = next(semconv[target] for target in _SEMCONV_ORDER if target in semconv)
        out[_schema.USER_HASH] = pseudonym(key, first)
    return out


_SEMCONV_ORDER = (_schema.USER_ID, _schema.USER_EMAIL, _schema.USER_NAME)


class LiveEvent(Event):
    """A span event whose attributes are final once its span ended; scrubbed as they are read."""

    def __init__(
        self,
        name: str,
        event_type: str,
        *,
        timestamp_ns: int | None,
        identifiers: Mapping[str, Scalar],
        user_source: str | None,
        scrubber: Scrubber,
        views: tuple[UserView, UserView] = (RAW, RAW),
        extra: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        super().__init__(name, None, timestamp_ns)
        self.event_id = os.urandom(16).hex()  # on every copy: span event, log record, store row
        self._views = views  # (host spans, our exports): see ``user_views``
        self.scrubber = scrubber  # what every copy of its attributes went through
        self._event_type = event_type
        self._properties: Mapping[str, AttributeValue] = {}
        self._dropped_properties = 0
        self._identifiers = identifiers
        self._user_source = user_source
        self._extra = extra
        self._owner: ReadableSpan | None = None
        self._limits: tuple[int | None, int | None] = (None, None)
        self._final = False
        # Built once final, by whichever thread reads first (the host's exporter, our spool):
        # (attributes, dropped) for the host's spans, and for our exports if they differ.
        self._host: tuple[Mapping[str, AttributeValue], int] | None = None
        self._export: Mapping[str, AttributeValue] | None = None

    def place(self, owner: ReadableSpan, limits: tuple[int | None, int | None]) -> None:
        """Record which span carries the event (its end makes the event final)."""
        self._owner = owner
        self._limits = limits

    def update(
        self,
        *,
        properties: tuple[Mapping[str, AttributeValue], int] | None = None,
        identifiers: tuple[Mapping[str, Scalar], str | None] | None = None,
        timestamp_ns: int | None = None,
    ) -> bool:
        """Replace the given options; False (nothing changed) if the event is already final."""
        with _LOCK:
            if self._final:
                return False
            if properties is not None:
                self._properties, self._dropped_properties = properties
            if identifiers is not None:
                self._identifiers, self._user_source = identifiers
            if timestamp_ns is not None:
                set_event_timestamp(self, timestamp_ns)
            return True

    def finalize(self) -> None:
        """Freeze the event as it is now (its span is ending): O(1), nothing is built here."""
        with _LOCK:
            self._final = True

    def _is_final(self) -> bool:
        if self._final:
            return True
        owner = self._owner
        if owner is not None and owner.end_time is not None:  # ended without our processor
            self.finalize()
            return True
        return False

    def export_attributes(self) -> Mapping[str, AttributeValue]:
        """The attributes our exporters ship: the host's, unless user identifiers are kept off
        host spans (then they are added back here, pseudonymised if a key is set)."""
        host, ours = self._views
        if host == ours:
            return self.attributes
        if self._export is not None:
            return self._export
        if not self._is_final():
            with _LOCK:  # a consistent snapshot while a builder may still change it
                return self._build(ours)[0]
        self._export = built = self._build(ours)[0]  # final: inputs frozen, no lock needed
        return built

    def _build(self, view: UserView) -> tuple[Mapping[str, AttributeValue], int]:
        """Read-only scrubbed attributes and how many the span's limits dropped (as the SDK counts).

        Values are already valid attribute values (normalised at the call), so unlike
        ``span.add_event`` nothing is cleaned again here. Scrubbed before the span's limits
        apply, so a truncation never cuts a secret into a shape the scrubber no longer knows:
        ``OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`` evicts the oldest keys (ours come last, so they
        survive), ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` truncates strings.
        """
        values: dict[str, AttributeValue] = {
            _schema.PROPERTIES_PREFIX + key: value for key, value in self._properties.items()
        }
        if self._identifiers and view.shown:
            values.update(user_attributes(self._identifiers, view))
            if self._user_source is not None:
                values[_schema.USER_SOURCE] = self._user_source
        if self._extra:
            values.update(self._extra)
        if self._dropped_properties:
            values[_schema.DROPPED_PROPERTIES] = self._dropped_properties
        values = self.scrubber.scrub_attributes(values)
        values[_schema.EVENT_ID] = self.event_id
        values[_schema.EVENT_TYPE] = self._event_type
        max_attributes, max_length = self._limits
        # A mask can be longer than what it hides: our own value limit holds after scrubbing too.
        limit = MAX_VALUE_LENGTH if max_length is None else min(max_length, MAX_VALUE_LENGTH)
        values = {key: _truncated(value, limit) for key, value in values.items()}
        dropped = 0
        if max_attributes is not None and len(values) > max_attributes:
            dropped = len(values) - max_attributes
            values = dict(list(values.items())[dropped:])
        return MappingProxyType(values), dropped

    def _attributes_and_dropped(self) -> tuple[Mapping[str, AttributeValue], int]:
        host = self._host
        if host is not None:
            return host
        if not self._is_final():
            with _LOCK:  # a consistent snapshot while a builder may still change it
                return self._build(self._views[0])
        # Final: inputs frozen, no lock needed; racing readers build the same value.
        self._host = built = self._build(self._views[0])
        return built

    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        return self._attributes_and_dropped()[0]

    @property
    def dropped_attributes(self) -> int:
        return self._attributes_and_dropped()[1]


def _truncated(value: AttributeValue, limit: int) -> AttributeValue:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return tuple(item[:limit] for item in value)
    return value
