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

import threading
from collections.abc import Mapping

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan

from sqreen_otel import _schema
from sqreen_otel._normalize import AttributeValue, Scalar


def user_attributes(identifiers: Mapping[str, Scalar]) -> dict[str, AttributeValue]:
    """``sqreen.user.<key>`` for every identifier, plus ``user.id``/``user.email``/``user.name``."""
    out: dict[str, AttributeValue] = {}
    semconv: dict[str, AttributeValue] = {}
    for key, value in identifiers.items():
        out[_schema.USER_PREFIX + key] = value
        target = _schema.SEMCONV_USER_KEYS.get(key.lower())
        if target is not None and target not in semconv:
            semconv[target] = value if isinstance(value, str) else str(value)
    out.update(semconv)
    return out


class LiveEvent(Event):
    """A span event whose attributes are final once read after its span ended."""

    def __init__(
        self,
        name: str,
        event_type: str,
        *,
        timestamp_ns: int | None,
        identifiers: Mapping[str, Scalar],
        user_source: str | None,
        extra: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        super().__init__(name, None, timestamp_ns)
        self._lock = threading.Lock()
        self._event_type = event_type
        self._properties: Mapping[str, AttributeValue] = {}
        self._dropped_properties = 0
        self._identifiers = identifiers
        self._user_source = user_source
        self._extra = extra
        self._owner: ReadableSpan | None = None
        self._limits: tuple[int | None, int | None] = (None, None)
        self._final: BoundedAttributes | None = None

    def place(self, owner: ReadableSpan, limits: tuple[int | None, int | None]) -> None:
        """Record which span carries the event (its end makes the event final)."""
        self._owner = owner
        self._limits = limits

    @property
    def owner(self) -> ReadableSpan | None:
        return self._owner

    @property
    def is_final(self) -> bool:
        return self._final is not None

    def update(
        self,
        *,
        properties: tuple[Mapping[str, AttributeValue], int] | None = None,
        identifiers: tuple[Mapping[str, Scalar], str | None] | None = None,
        timestamp_ns: int | None = None,
    ) -> bool:
        """Replace the given options; False (nothing changed) if the event is already final."""
        with self._lock:
            if self._final is not None:
                return False
            if properties is not None:
                self._properties, self._dropped_properties = properties
            if identifiers is not None:
                self._identifiers, self._user_source = identifiers
            if timestamp_ns is not None:
                self._timestamp = timestamp_ns
            return True

    def finalize(self) -> None:
        """Freeze the attributes as they are now (the span is ending)."""
        with self._lock:
            if self._final is None:
                self._final = self._build()

    def _build(self) -> BoundedAttributes:
        # Ours last: if OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT bites, the SDK evicts the oldest keys first.
        values: dict[str, AttributeValue] = {
            _schema.PROPERTIES_PREFIX + key: value for key, value in self._properties.items()
        }
        values.update(user_attributes(self._identifiers))
        if self._user_source is not None and self._identifiers:
            values[_schema.USER_SOURCE] = self._user_source
        if self._extra:
            values.update(self._extra)
        if self._dropped_properties:
            values[_schema.DROPPED_PROPERTIES] = self._dropped_properties
        values[_schema.EVENT_TYPE] = self._event_type
        max_attributes, max_length = self._limits
        return BoundedAttributes(max_attributes, values, immutable=True, max_value_len=max_length)

    @property
    def attributes(self) -> BoundedAttributes:
        final = self._final
        if final is not None:
            return final
        with self._lock:
            if self._final is not None:
                return self._final
            built = self._build()
            owner = self._owner
            if owner is not None and owner.end_time is not None:
                self._final = built
            return built

    @property
    def dropped_attributes(self) -> int:
        return self.attributes.dropped
