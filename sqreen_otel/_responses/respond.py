"""The recording side of enforcement: each enforcement becomes an ``sq.action.<kind>`` event.

``ip_response`` runs in ``SqreenMiddleware`` before the app; ``user_response`` where the app
identifies its user (``_record``); ``is_blocked`` answers without raising. The events carry
the action's id and what matched (the client IP, or the identifier keys that matched: the
user's identifiers are on the event already), and the redirect URL for redirects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqreen_otel._responses import enforcement
from sqreen_otel._responses.index import Match
from sqreen_otel._responses.registry import current_index

if TYPE_CHECKING:
    from sqreen_otel._recording.builders import _Target

ACTION_EVENT_TYPE = "action"


def action_event_name(kind: str) -> str:
    return f"sq.action.{kind}"


def record_enforcement(target: _Target | None, match: Match) -> None:
    """Record ``sq.action.<kind>`` for an enforced action (on the request, like any event)."""
    if target is None:
        return
    action = match.action
    properties: dict[str, Any] = {"action_id": action.action_id}
    properties["ip_address" if action.on_ip else "matched"] = match.matched
    if action.url is not None:
        properties["url"] = action.url
    target.record(action_event_name(action.kind), ACTION_EVENT_TYPE, {}, properties=(properties, 0))


def ip_response(environ: Mapping[str, Any]) -> enforcement.RequestBlocked | None:
    """The response for a request whose client IP an action covers (recorded), or None."""
    match = enforcement.ip_match(environ)
    if match is None:
        return None
    from sqreen_otel._recording.builders import current_target

    action = enforcement.enforced(match)
    record_enforcement(current_target(), match)
    return enforcement.RequestBlocked(action.action_id, action.kind, action.url)


def user_response(target: _Target, identifiers: Mapping[str, object]) -> enforcement.RequestBlocked | None:
    """The ``RequestBlocked`` to raise for a user the app just identified (recorded), or None."""
    from sqreen_otel._recording.request_state import current_environ

    match = enforcement.check_user(identifiers, current_environ())
    if match is None:
        return None
    record_enforcement(target, match)
    action = match.action
    return enforcement.RequestBlocked(action.action_id, action.kind, action.url)


def is_blocked(identifiers: Mapping[str, object] | None, ip: str | None) -> bool:
    """Whether a block action covers this user or this IP (no event, no exception)."""
    index = current_index()
    now = time.time()
    if ip is not None:
        match = index.match_ip(ip, now)
        if match is not None and match.action.blocks:
            return True
    if identifiers:
        match = index.match_user(identifiers, now, enforcement.settings().hmac_key)
        if match is not None and match.action.blocks:
            return True
    return False
