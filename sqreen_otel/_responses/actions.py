"""The action model: Sqreen's, validated.

``{"action_id": "...", "action": "block_ip" | "block_user" | "redirect_ip" | "redirect_user",
"duration": seconds (absent or null: permanent), "parameters": {"ip_cidr": [...],
"users": [{...identifiers}], "url": "..."}}``, plus ``created_at`` (epoch seconds or ISO 8601)
from which the duration runs: stores set it; in a file it is optional (then the duration runs
from the moment a process first saw the action).

Each action is validated alone: a bad one is rejected with a reason (``ActionError``) and the
others still apply. Everything in an action is hostile input: identifiers and ids are bounded,
URLs must be absolute http(s) without credentials, CIDRs are parsed strictly by ``ipaddress``.

User matching compares identifier *texts*: an action's ``{"id": 42}`` matches a user
identified as ``{"id": "42"}`` (and the reverse), the same rule as the keyed pseudonyms, which
also match: with ``SQREEN_USER_ID_HMAC_KEY`` an action may name a user by the pseudonym the
Event Explorer shows. An action's user matches when each of its identifiers is among the
request's (a subset: ``{"email": "a@b"}`` matches ``{"email": "a@b", "id": 7}``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

ActionKind = Literal["block_ip", "block_user", "redirect_ip", "redirect_user"]
KINDS: Final[tuple[ActionKind, ...]] = ("block_ip", "block_user", "redirect_ip", "redirect_user")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ID_LENGTH: Final = 128
MAX_URL_LENGTH: Final = 2048
MAX_USERS: Final = 10_000
MAX_IDENTIFIERS: Final = 16
MAX_IDENTIFIER_LENGTH: Final = 512
MAX_CIDRS: Final = 1_000_000
MAX_DURATION_S: Final = 100 * 365 * 86400.0
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,128}")


class ActionError(ValueError):
    """Why an action is rejected (no value from it: the reason is safe to log)."""


@dataclass(frozen=True)
class Unreadable:
    """A stored action whose body is not JSON (garbled, written by hand): rejected alone, under
    the key it is stored at, like any other invalid action."""

    action_id: str
    reason: str = "its stored body is not valid JSON"


UserKey = frozenset[tuple[str, str]]  # an action's user: its identifiers as texts


@dataclass(frozen=True)
class Action:
    action_id: str
    kind: ActionKind
    created_at: float  # epoch seconds
    expires_at: float | None  # None: permanent
    networks: tuple[IPNetwork, ...] = ()
    users: tuple[UserKey, ...] = ()
    url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def blocks(self) -> bool:
        return self.kind.startswith("block_")

    @property
    def on_ip(self) -> bool:
        return self.kind.endswith("_ip")

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        """The action as the model's JSON (what the stores and the CLI write)."""
        parameters: dict[str, Any] = {}
        if self.networks:
            parameters["ip_cidr"] = [str(network) for network in self.networks]
        if self.users:
            parameters["users"] = [dict(sorted(user)) for user in self.users]
        if self.url is not None:
            parameters["url"] = self.url
        return {
            "action_id": self.action_id,
            "action": self.kind,
            "created_at": self.created_at,
            "duration": None if self.expires_at is None else self.expires_at - self.created_at,
            "parameters": parameters,
        }


def identifier_text(value: object) -> str:
    """How an identifier value compares: its text (``42`` and ``"42"`` are the same user)."""
    return value if isinstance(value, str) else str(value)


def _action_id(raw: Mapping[str, Any]) -> str:
    value = raw.get("action_id")
    if not isinstance(value, str) or not _PRINTABLE_ID.fullmatch(value):
        raise ActionError("action_id must be 1 to 128 printable ASCII characters without spaces")
    return value


def _seconds(value: float) -> float:
    """``value`` as a float; an integer too large for one (valid JSON: ``1`` and 400 zeros) is
    infinite, so the range checks reject it."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _created_at(value: object, first_seen: float) -> float:
    if value is None:
        return first_seen
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ActionError("created_at must be epoch seconds or an ISO 8601 time")
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ActionError("created_at is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        value = moment.timestamp()
    seconds = _seconds(value)
    if not math.isfinite(seconds) or not 0 <= seconds < 1e11:
        raise ActionError("created_at is out of range")
    return seconds


def _expires_at(value: object, created_at: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ActionError("duration must be a number of seconds (or absent: permanent)")
    seconds = _seconds(value)
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION_S:
        raise ActionError("duration must be between 0 and 100 years (absent: permanent)")
    return created_at + seconds


def _networks(value: object) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ActionError("an IP action needs parameters.ip_cidr, a non-empty list of CIDRs")
    if len(value) > MAX_CIDRS:
        raise ActionError(f"parameters.ip_cidr holds more than {MAX_CIDRS} entries")
    networks = []
    for item in value:
        if not isinstance(item, str) or len(item) > 64:
            raise ActionError("parameters.ip_cidr entries must be IP addresses or CIDRs (text)")
        try:
            networks.append(_unmapped(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise ActionError("parameters.ip_cidr holds an entry that is not an IP address or CIDR") from None
    return tuple(networks)


def _unmapped(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (``::ffff:198.51.100.7``, as dual-stack servers log IPv4
    clients) as the IPv4 network it means: clients are matched as IPv4, so it would never match."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _users(value: object) -> tuple[UserKey, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ActionError("a user action needs parameters.users, a non-empty list of identifier maps")
    if len(value) > MAX_USERS:
        raise ActionError(f"parameters.users holds more than {MAX_USERS} users")
    users = []
    for user in value:
        if not isinstance(user, Mapping) or not user or len(user) > MAX_IDENTIFIERS:
            raise ActionError(f"each user must be a map of 1 to {MAX_IDENTIFIERS} identifiers")
        pairs = []
        for key, item in user.items():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_ID_LENGTH:
                raise ActionError("identifier keys must be non-empty text of at most 128 characters")
            if isinstance(item, float) and not math.isfinite(item):
                raise ActionError("identifier values must be finite")
            if not isinstance(item, str | int | float | bool):
                raise ActionError("identifier values must be text, numbers or booleans")
            text = identifier_text(item)
            if not 0 < len(text) <= MAX_IDENTIFIER_LENGTH:
                raise ActionError(f"identifier values must be 1 to {MAX_IDENTIFIER_LENGTH} characters")
            pairs.append((key, text))
        users.append(frozenset(pairs))
    return tuple(users)


def safe_redirect_url(value: object) -> str:
    """An absolute http(s) URL with a host, no credentials, no control characters."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_LENGTH:
        raise ActionError(f"a redirect needs parameters.url, at most {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F or not char.isascii() for char in value):
        raise ActionError("parameters.url must be ASCII without spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        hostname, _ = parts.hostname, parts.port  # both validate (brackets, port range)
    except ValueError:
        raise ActionError("parameters.url is not a valid URL (host or port)") from None
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise ActionError("parameters.url must be an absolute http:// or https:// URL")
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):  # Python 3.10's urlsplit takes any text in brackets
        try:
            ipaddress.IPv6Address(host[1:].partition("]")[0])
        except ValueError:
            raise ActionError("parameters.url is not a valid URL (host or port)") from None
    elif "[" in host or "]" in host:
        raise ActionError("parameters.url is not a valid URL (host or port)")
    if parts.username is not None or parts.password is not None:
        raise ActionError("parameters.url must not hold credentials")
    return value


def parse_action(raw: object, first_seen: float) -> Action:
    """One action from its JSON form; ``first_seen``: when its duration runs from if it has no
    ``created_at``. Raises ``ActionError`` with a reason safe to log, and only that: whatever
    else hostile input might make the validation raise rejects this action alone."""
    try:
        return _parse_action(raw, first_seen)
    except ActionError:
        raise
    except Exception as error:  # noqa: BLE001 - one action's problem, never every action's
        raise ActionError(f"the action cannot be validated ({type(error).__name__})") from None


def _parse_action(raw: object, first_seen: float) -> Action:
    if isinstance(raw, Unreadable):
        raise ActionError(raw.reason)
    if not isinstance(raw, Mapping):
        raise ActionError("an action must be a JSON object")
    action_id = _action_id(raw)
    kind = raw.get("action")
    if kind not in KINDS:
        raise ActionError(f"action must be one of {', '.join(KINDS)}")
    parameters = raw.get("parameters")
    if not isinstance(parameters, Mapping):
        raise ActionError("parameters must be a JSON object")
    created_at = _created_at(raw.get("created_at"), first_seen)
    expires_at = _expires_at(raw.get("duration"), created_at)
    on_ip = kind.endswith("_ip")
    networks = _networks(parameters.get("ip_cidr")) if on_ip else ()
    users = () if on_ip else _users(parameters.get("users"))
    url = safe_redirect_url(parameters.get("url")) if kind.startswith("redirect_") else None
    return Action(action_id, kind, created_at, expires_at, networks, users, url, raw)


def action_label(raw: object, fallback: str) -> str:
    """How to name a raw action in a log or a listing: its id when it is a valid one."""
    candidate = raw.get("action_id") if isinstance(raw, Mapping) else getattr(raw, "action_id", None)
    return candidate if isinstance(candidate, str) and _PRINTABLE_ID.fullmatch(candidate) else fallback


def parse_actions(
    items: Iterable[object], first_seen: Mapping[str, float], now: float
) -> tuple[list[Action], list[tuple[str, str]]]:
    """Valid actions and (action id or position, reason) of the rejected ones. ``first_seen``:
    when this process first saw each action id (its duration's start without ``created_at``)."""
    actions: list[Action] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    for position, raw in enumerate(items):
        label = action_label(raw, f"#{position}")
        try:
            action = parse_action(raw, first_seen.get(label, now))
        except ActionError as error:
            rejected.append((label, str(error)))
            continue
        if action.action_id in seen:
            rejected.append((label, "duplicate action_id (the first one is kept)"))
            continue
        seen.add(action.action_id)
        actions.append(action)
    return actions, rejected
