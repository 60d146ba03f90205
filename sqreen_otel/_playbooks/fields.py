"""What a playbook reads from an event: its fields, named the way the Event Explorer shows them.

``name``, ``client_ip``, ``user_agent``, ``method``, ``path``, ``route`` (also as
``request.<field>``), ``user`` (all the identifiers, as one value), ``user.<identifier>`` and
``properties.<name>`` (a dotted name is looked up as one key first, then as a path into nested
objects). Events come from the store or from the
explorer's ``--json`` lines: both become ``Observed``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqreen_otel._shipping.event_model import SecurityEvent

_REQUEST = ("client_ip", "user_agent", "method", "path", "route")
_PART = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


class Observed(NamedTuple):
    """One event as the playbooks see it (already scrubbed)."""

    name: str
    time: float  # epoch seconds
    key: str  # unique per event ("" when unknown: replayed JSON lines)
    user: Mapping[str, Any]
    properties: Mapping[str, Any]
    request: Mapping[str, Any]  # client_ip, user_agent, method, path, route
    user_text: str | None = None  # the ``user`` field, computed once (None: on each read)

    @classmethod
    def from_event(cls, event: SecurityEvent) -> Observed:
        request = event.request
        return cls(
            event.name,
            event.timestamp_ns / 1e9,
            event.key,
            event.user_identifiers,
            event.properties,
            {
                "client_ip": request.client_ip,
                "user_agent": request.user_agent,
                "method": request.method,
                "path": request.path,
                "route": request.route,
            },
            user_text(event.user_identifiers),
        )

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Observed:
        """A line of ``sqreen-otel events --json``; ``ValueError`` if it is not one."""
        name, moment = record.get("name"), record.get("time")
        if not isinstance(name, str) or not isinstance(moment, str):
            raise ValueError("needs a string name and an ISO time")
        when = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        user, properties = record.get("user"), record.get("properties")
        key = record.get("event_id")
        return cls(
            name,
            when.timestamp(),
            key if isinstance(key, str) else "",
            user if isinstance(user, dict) else {},
            properties if isinstance(properties, dict) else {},
            {field: record.get(field) for field in _REQUEST},
            user_text(user if isinstance(user, dict) else {}),
        )


@dataclass(frozen=True)
class FieldPath:
    text: str  # as written
    scope: str  # "name" | "request" | "user" | "properties"
    key: str

    def get(self, event: Observed) -> Any:
        """The value, or None when the event has none."""
        if self.scope == "name":
            return event.name
        if self.scope == "request":
            return event.request.get(self.key)
        if self.scope == "user":
            if not self.key:  # the whole identifier map, as one canonical text
                return event.user_text if event.user_text is not None else user_text(event.user)
            return event.user.get(self.key)
        properties = event.properties
        if self.key in properties:
            return properties[self.key]
        found: Any = properties
        for part in self.key.split("."):
            if not isinstance(found, Mapping) or part not in found:
                return None
            found = found[part]
        return found

    @property
    def is_ip(self) -> bool:
        return self.scope == "request" and self.key == "client_ip"

    @property
    def is_user_key(self) -> bool:
        """``user.<key>``: the group is that identifier's value."""
        return self.scope == "user" and bool(self.key)


def user_text(user: Mapping[str, Any]) -> str | None:
    """All of a user's identifiers as one value (the ``user`` field); None for no user."""
    if not user:
        return None
    return json.dumps(dict(user), sort_keys=True, ensure_ascii=False, default=str)


def parse_field(text: str) -> FieldPath:
    if text == "name":
        return FieldPath(text, "name", "")
    if text == "user":
        return FieldPath(text, "user", "")
    if text in _REQUEST:
        return FieldPath(text, "request", text)
    scope, _, key = text.partition(".")
    if scope == "request" and key in _REQUEST:
        return FieldPath(text, "request", key)
    if scope in ("user", "properties") and _PART.fullmatch(key):
        return FieldPath(text, scope, key)
    raise ValueError(
        "unknown field: use client_ip, user_agent, method, path, route, name, user, user.<key> "
        "or properties.<name>"
    )
