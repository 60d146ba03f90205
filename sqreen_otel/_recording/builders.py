"""The Go-SDK-shaped API: ``from_context(ctx).track_event(name).with_properties(...)``.

``from_context`` never returns None. Each ``with_*`` call replaces that option's previous
value, and the result is exactly one event with the final values (see ``_events.LiveEvent``
for how, given that OpenTelemetry freezes event attributes).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span

from sqreen_otel import _schema
from sqreen_otel._config import current_config
from sqreen_otel._guard import guarded
from sqreen_otel._log import warn_once
from sqreen_otel._recording.live_event import LiveEvent, identity_attributes, user_views
from sqreen_otel._recording.request_state import RequestState, current_state, pending_environ
from sqreen_otel._recording.routing import end_carrier, hold_open, place, unsampled_request
from sqreen_otel._recording.validate import (
    AttributeValue,
    MappingLike,
    Scalar,
    check_bool,
    check_event_name,
    check_mapping,
    normalize_identifiers,
    normalize_properties,
    timestamp_ns,
)
from sqreen_otel._responses.respond import user_response
from sqreen_otel._scrubbing.scrubber import scrubber_for
from sqreen_otel._stats import stats

__all__ = ["RequestRecord", "TrackedEvent", "UserRecord", "from_context"]


def reserved(name: str, where: str) -> bool:
    """True (with a warning) if ``name`` uses the prefix reserved for the library's own events."""
    if not name.startswith(_schema.RESERVED_PREFIX):
        return False
    stats.add("events_ignored_reserved_name")
    warn_once(
        ("reserved", name),
        "%s: event names starting with %r are reserved for sqreen_otel; event %r ignored.",
        where,
        _schema.RESERVED_PREFIX,
        name,
    )
    return True


class _Target:
    """The request (or fallback span) events are recorded against."""

    __slots__ = ("current", "state")

    def __init__(self, state: RequestState | None, current: Span) -> None:
        self.state = state
        self.current = current

    def identifiers_for(
        self, own: dict[str, Scalar], event_name: str
    ) -> tuple[dict[str, Scalar], str | None]:
        """The event's own identifiers, else the identified user's (Sqreen's attribution rule)."""
        identified = self.state.identified if self.state is not None else None
        if own:
            if identified is not None and identified != own:
                warn_once(
                    ("identity_mismatch", event_name),
                    "Event %r was tracked with user identifiers that differ from identify(); "
                    "the event keeps its own.",
                    event_name,
                )
            return own, "event"
        if identified:
            return identified, "identify"
        return {}, None

    def record(
        self,
        name: str,
        event_type: str,
        identifiers: dict[str, Scalar],
        *,
        properties: tuple[dict[str, AttributeValue], int] | None = None,
        timestamp: int | None = None,
        extra: Mapping[str, AttributeValue] | None = None,
        keep_open: bool = False,
    ) -> TrackedEvent:
        ids, source = self.identifiers_for(identifiers, name)
        config = current_config()
        event = LiveEvent(
            name,
            event_type,
            timestamp_ns=timestamp,
            identifiers=ids,
            user_source=source,
            scrubber=scrubber_for(config),
            views=user_views(config),
            extra=extra,
        )
        if properties is not None:
            event.update(properties=properties)
        recorded, carrier = place(self.state, self.current, event)
        if recorded:
            stats.add("events_recorded")
        tracked = TrackedEvent(self, event if recorded else None, identifiers)
        if carrier is not None:
            if keep_open:  # the builder may still refine it: see _placement.MAX_OPEN_CARRIER_S
                hold_open(carrier)
                weakref.finalize(tracked, end_carrier, carrier)
            else:
                carrier.end()
        return tracked

    def record_auth(self, identifiers: dict[str, Scalar], success: bool) -> TrackedEvent:
        """``users.login.success`` or ``users.login.failure``."""
        name = _schema.LOGIN_SUCCESS_EVENT if success else _schema.LOGIN_FAILURE_EVENT
        return self.record(name, "auth", identifiers, extra={_schema.AUTH_SUCCESS: success})

    def identify(self, ids: dict[str, Scalar], traits: Mapping[Any, Any] | None, where: str) -> None:
        """Associate the user with the request (attributes on its span) and record ``sq.identify``."""
        if not ids:
            warn_once(("identify_empty", where), "%s: no user identifiers given; nothing identified.", where)
            return
        config = current_config()
        props, _ = normalize_properties(traits, config.max_event_properties, "identify traits")
        host_view = user_views(config)[0]
        scrubber = scrubber_for(config)
        if self.state is not None:
            if not self.state.identify(ids, props, host_view, scrubber):
                warn_once(
                    "identify_twice",
                    "%s: the request already identified another user; the first one is kept.",
                    where,
                )
        elif self.current.is_recording():
            self.current.set_attributes(identity_attributes(ids, props, host_view, scrubber))
        self.record(_schema.IDENTIFY_EVENT_NAME, "identify", ids)
        blocked = user_response(self, ids)
        if blocked is not None:
            raise blocked  # a BaseException: the middleware answers with the block or redirect


def _track_event(target: _Target | None, name: object, identifiers: dict[str, Scalar]) -> TrackedEvent:
    """The builder both ``track_event`` shapes return (inert when disabled or reserved)."""
    checked = check_event_name(name, "track_event()")
    if target is None or reserved(checked, "track_event()"):
        return TrackedEvent(None, None, {})
    return target.record(checked, "track", identifiers, keep_open=True)


class TrackedEvent:
    """One tracked event; chain ``with_*`` calls to describe it (each replaces that option)."""

    __slots__ = ("__weakref__", "_event", "_own_identifiers", "_target")

    def __init__(
        self, target: _Target | None, event: LiveEvent | None, identifiers: dict[str, Scalar]
    ) -> None:
        self._target = target
        self._event = event
        self._own_identifiers = identifiers

    @property
    def recorded(self) -> bool:
        """True if the event was recorded (False: reserved name, disabled, or lost and counted)."""
        return self._event is not None

    def _apply(self, **changes: Any) -> None:
        event = self._event
        if event is not None and not event.update(**changes):
            stats.add("event_changes_after_end_ignored")
            warn_once(
                ("changed_after_end", event.name),
                "Event %r was changed after its span ended and was exported; the change is ignored.",
                event.name,
            )

    @guarded(lambda self, *_: self)
    def with_properties(self, properties: MappingLike | None) -> TrackedEvent:
        """Replace the event's properties (up to ``SQREEN_MAX_EVENT_PROPERTIES`` keys)."""
        mapping = check_mapping(properties, "properties", "with_properties()")
        if self._event is not None:
            normalized = normalize_properties(
                mapping, current_config().max_event_properties, self._event.name
            )
            self._apply(properties=normalized)
        return self

    @guarded(lambda self, *_: self)
    def with_timestamp(self, timestamp: datetime) -> TrackedEvent:
        """Replace the event's time (a naive datetime is taken as UTC)."""
        name = self._event.name if self._event is not None else ""
        nanos = timestamp_ns(timestamp, "with_timestamp()", name)
        if nanos is not None:
            self._apply(timestamp_ns=nanos)
        return self

    @guarded(lambda self, *_: self)
    def with_user_identifiers(self, user_identifiers: MappingLike | None) -> TrackedEvent:
        """Replace the user the event is about (empty: the identified user, if any)."""
        mapping = check_mapping(user_identifiers, "user_identifiers", "with_user_identifiers()")
        if self._event is not None and self._target is not None:
            own = normalize_identifiers(mapping, self._event.name)
            self._own_identifiers = own
            self._apply(identifiers=self._target.identifiers_for(own, self._event.name))
        return self


class UserRecord:
    """Calls about one user within a request (``for_user(ids)``)."""

    __slots__ = ("_identifiers", "_target")

    def __init__(self, target: _Target | None, identifiers: dict[str, Scalar]) -> None:
        self._target = target
        self._identifiers = identifiers

    @guarded(lambda self, *_: TrackedEvent(None, None, {}))
    def track_event(self, name: str) -> TrackedEvent:
        """A custom event about this user (identifiers preset)."""
        return _track_event(self._target, name, self._identifiers)

    @guarded(lambda self, *_: self)
    def track_auth(self, success: bool) -> UserRecord:
        """A login attempt: ``users.login.success`` or ``users.login.failure``."""
        check_bool(success, "success", "track_auth()")
        if self._target is not None:
            self._target.record_auth(self._identifiers, success)
        return self

    def track_auth_success(self) -> UserRecord:
        return self.track_auth(True)

    def track_auth_failure(self) -> UserRecord:
        return self.track_auth(False)

    @guarded(lambda self, *_: self)
    def track_signup(self) -> UserRecord:
        """A signup: ``users.signup``."""
        if self._target is not None:
            self._target.record(_schema.SIGNUP_EVENT, "signup", self._identifiers)
        return self

    @guarded(lambda self, *_: None)
    def identify(self) -> None:
        """Associate this user with the request; later events without identifiers are theirs."""
        if self._target is not None:
            self._target.identify(self._identifiers, None, "identify()")


class RequestRecord:
    """The security-event recorder of one request (or of the current span outside one)."""

    __slots__ = ("_target",)

    def __init__(self, target: _Target | None) -> None:
        self._target = target

    @guarded(lambda self, *_: TrackedEvent(None, None, {}))
    def track_event(self, name: str) -> TrackedEvent:
        """A custom event; describe it with ``with_properties`` / ``with_timestamp`` / ..."""
        return _track_event(self._target, name, {})

    @guarded(lambda self, *_: UserRecord(None, {}))
    def for_user(self, user_identifiers: MappingLike) -> UserRecord:
        """Calls about one user: ``for_user({"uid": 42}).track_auth_success()``."""
        mapping = check_mapping(user_identifiers, "user_identifiers", "for_user()")
        if self._target is None:
            return UserRecord(None, {})
        return UserRecord(self._target, normalize_identifiers(mapping, "for_user"))


_DISABLED = RequestRecord(None)


def current_target(ctx: context.Context | None = None) -> _Target | None:
    """What events of ``ctx`` are recorded against; None when the SDK is disabled."""
    if current_config().disable:
        return None
    state = current_state(ctx)
    if state is None and ctx is None:
        current = trace.get_current_span()
        environ = pending_environ.get()
        if environ is not None and not current.is_recording():
            state = unsampled_request(environ, current.get_span_context())
    if state is not None:
        record = state.record
        if record is None:
            record = state.record = RequestRecord(_Target(state, state.span))
        return record._target  # type: ignore[no-any-return]
    return _Target(None, trace.get_current_span(ctx))


@guarded(lambda *_: _DISABLED)
def from_context(ctx: context.Context | None = None) -> RequestRecord:
    """The recorder for the request of ``ctx`` (default: the current context). Never None."""
    target = current_target(ctx)
    if target is None:
        return _DISABLED
    if target.state is not None:
        return target.state.record  # type: ignore[no-any-return]
    return RequestRecord(target)
