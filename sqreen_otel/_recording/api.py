"""The Sqreen Python agent's module functions, on top of the same recorder as ``from_context``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqreen_otel import _schema
from sqreen_otel._config import current_config
from sqreen_otel._guard import guarded
from sqreen_otel._http.client_ip import resolve_client_ip
from sqreen_otel._recording.builders import current_target, reserved
from sqreen_otel._recording.request_state import current_environ, current_state
from sqreen_otel._recording.validate import (
    MappingLike,
    check_bool,
    check_event_name,
    check_mapping,
    normalize_identifiers,
    normalize_properties,
    timestamp_ns,
)
from sqreen_otel._responses.respond import is_blocked as blocked

__all__ = ["auth_track", "identify", "is_blocked", "signup_track", "track"]


@guarded(lambda *_: False)
def track(
    name: str,
    *,
    properties: MappingLike | None = None,
    user_identifiers: MappingLike | None = None,
    timestamp: datetime | None = None,
) -> bool:
    """Record a custom security event on the current request. False if it was ignored."""
    name = check_event_name(name, "track()")
    props = check_mapping(properties, "properties", "track()")
    ids = check_mapping(user_identifiers, "user_identifiers", "track()")
    nanos = timestamp_ns(timestamp, "track()", name) if timestamp is not None else None
    target = current_target()
    if target is None or reserved(name, "track()"):
        return False
    normalized = normalize_properties(props, current_config().max_event_properties, name)
    tracked = target.record(
        name, "track", normalize_identifiers(ids, name), properties=normalized, timestamp=nanos
    )
    return tracked.recorded


@guarded(lambda *_: None)
def identify(user_identifiers: MappingLike, traits: MappingLike | None = None) -> None:
    """Associate a user with the current request; its later events are attributed to them."""
    ids = check_mapping(user_identifiers, "user_identifiers", "identify()")
    traits = check_mapping(traits, "traits", "identify()")
    target = current_target()
    if target is not None:
        target.identify(normalize_identifiers(ids, _schema.IDENTIFY_EVENT_NAME), traits, "identify()")


@guarded(lambda *_: False)
def auth_track(success: bool, **user_identifiers: Any) -> bool:
    """A login attempt by this user; a successful one also identifies them."""
    check_bool(success, "success", "auth_track()")
    target = current_target()
    if target is None:
        return False
    ids = normalize_identifiers(user_identifiers, "auth_track")
    if success:
        target.identify(ids, None, "auth_track()")
    return target.record_auth(ids, success).recorded


@guarded(lambda *_: False)
def signup_track(**user_identifiers: Any) -> bool:
    """A signup by this user; it also identifies them."""
    target = current_target()
    if target is None:
        return False
    ids = normalize_identifiers(user_identifiers, "signup_track")
    target.identify(ids, None, "signup_track()")
    return target.record(_schema.SIGNUP_EVENT, "signup", ids).recorded


@guarded(lambda *_: False)
def is_blocked(user_identifiers: MappingLike | None = None, *, ip: str | None = None) -> bool:
    """Whether a security action blocks this user or this client IP; by default, the current
    request's client IP and identified user. Never raises ``RequestBlocked``, records nothing:
    for code that decides by itself (redirect actions do not count as blocks)."""
    ids = check_mapping(user_identifiers, "user_identifiers", "is_blocked()")
    if ip is not None and not isinstance(ip, str):
        raise TypeError(f"is_blocked(): ip must be a str, got {type(ip).__name__}")
    config = current_config()
    if config.disable or not config.responses:
        return False
    if ip is None and not ids:
        environ = current_environ()
        if environ is not None:
            ip = resolve_client_ip(environ, config.client_ip_policy).address
        state = current_state()
        ids = dict(state.identified) if state is not None and state.identified else {}
    identifiers = normalize_identifiers(ids, "is_blocked") if ids else None
    return blocked(identifiers, ip)
