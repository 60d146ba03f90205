"""The web Event Explorer's JSON API: each endpoint a function of the request's parameters.

Reads go to the event store (read-only connection) and the action store; writes (block,
unblock) only to the action store, through the same validation as every other source. A bad
parameter is a 400 with a reason that never echoes much of it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqreen_otel._durations import parse_duration
from sqreen_otel._explorer import query
from sqreen_otel._playbooks.schema import PlaybookError, parse_text
from sqreen_otel._responses.actions import ActionError, identifier_text, parse_action
from sqreen_otel._responses.index import ip_value
from sqreen_otel._responses.sources import ActionsFile, ActionStore, FileInvalid, StoreUnavailable
from sqreen_otel._shipping.store import open_read_only

MAX_ROWS = 1000
MAX_BUCKETS = 2000
MAX_TOML_BYTES = 256 * 1024


class ApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Context:
    store: str
    actions: Callable[[], ActionStore]
    actions_file: str | None
    playbooks_file: str | None
    read_only: bool


def _text(params: Mapping[str, str], name: str, limit: int = 512) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise ApiError(400, f"{name} is longer than {limit} characters")
    return value


def filters_from(params: Mapping[str, str]) -> query.Filters:
    """The explorer's filters from query parameters (the terminal explorer's options)."""
    times: dict[str, int | None] = {}
    for name in ("since", "until"):
        text = _text(params, name, 64)
        try:
            times[name] = query.parse_time(text) if text is not None else None
        except ValueError:
            raise ApiError(400, f"{name}: use 15m, 2h, 7d or an ISO 8601 time") from None
    properties: tuple[tuple[str, str], ...] = ()
    prop = _text(params, "property")
    if prop is not None:
        key, sep, wanted = prop.partition("=")
        if not sep or not key:
            raise ApiError(400, "property: use key=value")
        properties = ((key, wanted),)
    event_name = _text(params, "name", 256)
    return query.Filters(
        names=(event_name,) if event_name is not None else (),
        user=_text(params, "user"),
        user_json=_text(params, "user_json", 4096),
        ip=_text(params, "ip", 64),
        service=_text(params, "service", 256),
        properties=properties,
        since=times["since"],
        until=times["until"],
    )


def _limit(params: Mapping[str, str], default: int) -> int:
    try:
        value = int(params.get("limit", default))
    except ValueError:
        raise ApiError(400, "limit: a whole number") from None
    return max(1, min(value, MAX_ROWS))


class Api:
    def __init__(self, context: Context) -> None:
        self.context = context

    def _db(self) -> sqlite3.Connection:
        try:
            return open_read_only(self.context.store)
        except sqlite3.Error:
            raise ApiError(503, "the event store cannot be opened") from None

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        db = self._db()
        try:
            return work(db)
        except sqlite3.OperationalError as error:
            if str(error).startswith("no such table"):
                raise ApiError(404, "the event store holds no events yet") from None
            raise ApiError(503, "the event store cannot be read") from None
        except sqlite3.Error:
            raise ApiError(503, "the event store cannot be read") from None
        finally:
            db.close()

    # -- reads ----------------------------------------------------------------------------------

    def meta(self, params: Mapping[str, str]) -> dict[str, Any]:
        playbooks = None
        if self.context.playbooks_file is not None:
            try:
                with open(self.context.playbooks_file, encoding="utf-8", errors="replace") as handle:
                    playbooks = handle.read(MAX_TOML_BYTES)
            except OSError:
                playbooks = None
        return {
            "read_only": self.context.read_only,
            "store": self.context.store,
            "playbooks": playbooks,
        }

    def timeline(self, params: Mapping[str, str]) -> dict[str, Any]:
        filters = filters_from(params)
        try:
            bucket = int(params.get("bucket", "60"))
        except ValueError:
            raise ApiError(400, "bucket: seconds, a whole number") from None
        if bucket not in (60, 300, 3600, 86400):
            raise ApiError(400, "bucket: 60, 300, 3600 or 86400")
        rows = self._read(lambda db: query.timeline(db, filters, bucket))
        buckets: dict[int, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for start, name, count in rows:
            buckets.setdefault(start, {})[name] = count
            totals[name] = totals.get(name, 0) + count
        if len(buckets) > MAX_BUCKETS:
            raise ApiError(400, f"more than {MAX_BUCKETS} buckets: a shorter range or a longer bucket")
        names = sorted(totals, key=lambda name: (-totals[name], name))
        if len(names) > 7:  # the six busiest names, and the rest together
            keep = set(names[:6])
            for counts in buckets.values():
                other = sum(count for name, count in counts.items() if name not in keep)
                for name in [name for name in counts if name not in keep]:
                    del counts[name]
                if other:
                    counts["(other)"] = other
            names = [*names[:6], "(other)"]
        end = filters.until if filters.until is not None else time.time_ns()
        filled = _contiguous(buckets, bucket, filters.since, end)
        return {
            "bucket": bucket,
            "names": names,
            "buckets": [{"time": query.iso(start), "counts": filled[start]} for start in sorted(filled)],
        }

    def events(self, params: Mapping[str, str]) -> dict[str, Any]:
        filters = filters_from(params)
        limit = _limit(params, 100)
        rows = self._read(lambda db: query.events(db, filters, limit))
        return {"events": [{k: v for k, v in row.items() if k != "time_ns"} for row in rows]}

    def event(self, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            row_id = int(params.get("id", ""))
        except ValueError:
            raise ApiError(400, "id: a whole number") from None
        if not 0 < row_id < 2**63:
            raise ApiError(400, "id: out of range")
        row = self._read(lambda db: query.event(db, row_id))
        if row is None:
            raise ApiError(404, "no such event")
        return {"event": {k: v for k, v in row.items() if k != "time_ns"}}

    def groups(self, params: Mapping[str, str]) -> dict[str, Any]:
        filters = filters_from(params)
        by = _text(params, "by", 256) or "ip"
        limit = _limit(params, 100)
        rows = self._read(lambda db: query.groups(db, filters, by, limit))
        return {
            "by": by,
            "groups": [
                {
                    "value": row["value"],
                    "count": row["count"],
                    "distinct_users": row["distinct_users"],
                    "first": query.iso(row["first_ns"]),
                    "last": query.iso(row["last_ns"]),
                }
                for row in rows
            ],
        }

    def firings(self, params: Mapping[str, str]) -> dict[str, Any]:
        base = filters_from(params)
        filters = query.Filters(
            since=base.since, until=base.until, service=base.service, name_prefix="sq.playbook."
        )
        rows = self._read(lambda db: query.events(db, filters, _limit(params, 200)))
        firings = []
        for row in rows:
            properties = row["properties"] if isinstance(row["properties"], dict) else {}
            firings.append(
                {
                    "time": row["time"],
                    "playbook": row["name"].removeprefix("sq.playbook."),
                    "group_by": properties.get("group_by"),
                    "group": properties.get("group"),
                    "count": properties.get("count"),
                    "action_ids": properties.get("action_ids") or [],
                }
            )
        return {"firings": firings}

    def actions(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The active actions (store and file); with ``ip`` or ``user``, those that cover it."""
        now = time.time()
        raw: list[tuple[str, object]] = []
        try:
            raw.extend(("store", item) for item in self.context.actions().list_actions())
        except StoreUnavailable:
            raise ApiError(503, "the action store is unavailable") from None
        if self.context.actions_file is not None:
            with contextlib.suppress(FileInvalid):  # an invalid file: its actions are not in force
                raw.extend(("file", item) for item in ActionsFile(self.context.actions_file).read())
        ip = _text(params, "ip", 64)
        user = _user(params.get("user")) if params.get("user") else None
        shown = []
        for source, item in raw:
            try:
                action = parse_action(item, now)
            except ActionError:
                continue
            if not action.active(now):
                continue
            if ip is not None and not _covers_ip(action, ip):
                continue
            if user is not None and not _covers_user(action, user):
                continue
            target = ", ".join(str(network) for network in action.networks) or "; ".join(
                ",".join(f"{key}={value}" for key, value in sorted(users)) for users in action.users
            )
            shown.append(
                {
                    "source": source,
                    "action_id": action.action_id,
                    "action": action.kind,
                    "target": target + (f" -> {action.url}" if action.url else ""),
                    "until": None if action.expires_at is None else query.iso(int(action.expires_at * 1e9)),
                }
            )
        return {"actions": shown}

    # -- writes ---------------------------------------------------------------------------------

    def add_action(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = body.get("action")
        if kind not in ("block_ip", "block_user"):
            raise ApiError(400, "action: block_ip or block_user")
        parameters: dict[str, Any] = {}
        if kind == "block_ip":
            ip = body.get("ip")
            if not isinstance(ip, str) or "/" in ip or ip_value(ip) is None:
                raise ApiError(400, "ip: one IP address (a range is blocked with `sqreen-otel actions`)")
            parameters["ip_cidr"] = [ip]
        else:
            user = body.get("user")
            if not isinstance(user, dict) or not user:
                raise ApiError(400, "user: the user's identifiers")
            parameters["users"] = [user]
        duration = body.get("duration")
        seconds = None
        if isinstance(duration, str) and duration.strip():
            try:
                seconds = parse_duration(duration)
            except ValueError:
                raise ApiError(400, "duration: 30m, 2h, 7d, or empty for permanent") from None
        elif duration not in (None, ""):
            raise ApiError(400, "duration: 30m, 2h, 7d, or empty for permanent")
        raw = {
            "action_id": f"ui-{secrets.token_hex(6)}",
            "action": kind,
            "created_at": time.time(),
            "duration": seconds,
            "parameters": parameters,
        }
        try:
            action = parse_action(raw, time.time())
        except ActionError as error:
            raise ApiError(400, f"invalid action: {error}") from None
        try:
            self.context.actions().put(action.to_json())
        except StoreUnavailable:
            raise ApiError(503, "the action store is unavailable") from None
        return {"added": action.action_id}

    def remove_action(self, body: Mapping[str, Any]) -> dict[str, Any]:
        action_id = body.get("action_id")
        if not isinstance(action_id, str) or not 0 < len(action_id) <= 128:
            raise ApiError(400, "action_id: the action's id")
        try:
            removed = self.context.actions().remove(action_id)
        except StoreUnavailable:
            raise ApiError(503, "the action store is unavailable") from None
        if not removed:
            raise ApiError(404, "no such action in the store")
        return {"removed": action_id}

    def dry_run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The ``playbooks test`` engine over the selected range's events, acting on nothing."""
        from sqreen_otel._cli.playbooks import firing_record, replay, store_events

        text = body.get("toml")
        if not isinstance(text, str) or len(text.encode()) > MAX_TOML_BYTES:
            raise ApiError(400, f"toml: the playbooks, at most {MAX_TOML_BYTES} bytes")
        try:
            playbooks = parse_text(text, "the playbooks")
        except PlaybookError as error:
            raise ApiError(400, str(error)) from None
        filters = filters_from(
            {k: v for k, v in body.items() if isinstance(v, str) and k in ("since", "until")}
        )
        db = self._db()
        try:
            firings = replay(playbooks, store_events(db, playbooks, filters.since, filters.until))
        except sqlite3.Error:
            raise ApiError(503, "the event store cannot be read") from None
        finally:
            db.close()
        return {"firings": [firing_record(firing) for firing in firings[:MAX_ROWS]]}


def _contiguous(
    buckets: dict[int, dict[str, int]], bucket_s: int, since: int | None, until: int
) -> dict[int, dict[str, int]]:
    """Every bucket of the range, empty ones included (a burst stands out of a quiet line): from
    ``since`` (else the first event) to ``until``, when that is at most ``MAX_BUCKETS``."""
    width = bucket_s * 1_000_000_000
    if not buckets and since is None:
        return {}
    first = (since // width) * width if since is not None else min(buckets)
    last = max([(until // width) * width, *buckets])
    if (last - first) // width > MAX_BUCKETS:
        first, last = min(buckets, default=first), max(buckets, default=first)
        if (last - first) // width > MAX_BUCKETS:
            return buckets
    return {start: buckets.get(start, {}) for start in range(first, last + width, width)}


def _user(text: str | None) -> dict[str, str]:
    try:
        user = json.loads(text or "")
    except ValueError:
        raise ApiError(400, "user: the identifiers as a JSON object") from None
    if not isinstance(user, dict):
        raise ApiError(400, "user: the identifiers as a JSON object")
    return {str(key): identifier_text(value) for key, value in user.items()}


def _covers_ip(action: Any, ip: str) -> bool:
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address.version == network.version and address in network for network in action.networks)


def _covers_user(action: Any, user: Mapping[str, str]) -> bool:
    return any(all(user.get(key) == value for key, value in wanted) for wanted in action.users)
