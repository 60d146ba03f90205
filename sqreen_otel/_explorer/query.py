"""The Event Explorer's queries over the local store, shared by ``sqreen-otel events`` (the
terminal) and ``sqreen-otel ui`` (the browser): one filter rule, one group-by rule.

Every query is bounded (a limit, or a time range with an index) and parameterised; a field
name from the user is only ever a JSON path parameter, never SQL text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqreen_otel._shipping.store import event_columns

FIELDS = {
    "name": "name",
    "type": "type",
    "ip": "client_ip",
    "client_ip": "client_ip",
    "path": "path",
    "route": "route",
    "method": "method",
    "verb": "method",
    "user_agent": "user_agent",
    "service": "service",
    "user": "user",
}
MAX_LIMIT = 1_000_000
_RELATIVE = re.compile(r"^(\d{1,12}(?:\.\d{1,9})?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_COLUMNS = (
    "id, time_ns, name, type, user, client_ip, method, path, route, user_agent, parameters, properties,"
    " trace_id, span_id, service"
)


@dataclass(frozen=True)
class Filters:
    names: tuple[str, ...] = ()
    user: str | None = None  # any identifier's value, or key=value
    user_json: str | None = None  # exactly this stored identifier map (a user's page)
    ip: str | None = None
    service: str | None = None
    properties: tuple[tuple[str, str], ...] = ()  # key=value, compared as text
    since: int | None = None  # ns since the epoch, inclusive
    until: int | None = None  # exclusive
    name_prefix: str | None = None  # every event whose name starts so (sq.playbook.)


def parse_time(value: str, now: dt.datetime | None = None) -> int:
    """Nanoseconds since the epoch from ``15m``/``2h``/``7d`` (ago) or an ISO 8601 time (UTC if
    naive); ``ValueError`` otherwise. Out-of-range times are clamped, never an error."""
    now = now or dt.datetime.now(tz=dt.timezone.utc)
    relative = _RELATIVE.match(value.strip())
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        ago = (now - _EPOCH).total_seconds() - seconds
        return min(max(int(ago * 1e9), 0), 2**63 - 1)
    moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return min(max(int((moment - _EPOCH).total_seconds() * 1e9), 0), 2**63 - 1)  # fits SQLite's int64


def member(column: str, key: str, first: bool = False) -> tuple[str, list[Any]]:
    """SQL for the member ``key`` of a JSON object column (keys may hold dots, quotes, anything):
    a quoted JSON path when SQLite's paths can name it, else a lookup among the object's keys
    (its paths do not unescape a quote or a backslash). ``first``: the member's first item
    (query parameters are lists)."""
    if '"' not in key and "\\" not in key:
        return f"json_extract({column}, ?)", [
            "$." + json.dumps(key, ensure_ascii=False) + ("[0]" if first else "")
        ]
    value = "json_extract(value, '$[0]')" if first else "value"
    return f"(SELECT {value} FROM json_each(events.{column}) WHERE key = ?)", [key]


def group_expression(field: str) -> tuple[str, list[Any]]:
    """SQL for a group-by field: a column, ``user`` (the identifier map), ``user.<key>``,
    ``param.<key>`` or a property (``properties.<key>`` or bare)."""
    if field in FIELDS:
        return FIELDS[field], []
    for prefix, column in (("user.", "user"), ("properties.", "properties"), ("property.", "properties")):
        if field.startswith(prefix):
            return member(column, field[len(prefix) :])
    if field.startswith(("param.", "parameters.")):
        return member("parameters", field.split(".", 1)[1], first=True)
    return member("properties", field)


def where(filters: Filters) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    values: list[Any] = []
    if filters.names:
        clauses.append(f"name IN ({', '.join('?' for _ in filters.names)})")
        values.extend(filters.names)
    if filters.name_prefix is not None:
        clauses.append("name >= ? AND name < ?")  # a prefix, on the (name, time) index
        values.extend([filters.name_prefix, filters.name_prefix + "\U0010ffff"])
    if filters.ip:
        clauses.append("client_ip = ?")
        values.append(filters.ip)
    if filters.service:
        clauses.append("service = ?")
        values.append(filters.service)
    if filters.user_json is not None:
        clauses.append("user = ?")
        values.append(filters.user_json)
    if filters.user:
        key, sep, wanted = filters.user.partition("=")
        if sep:
            expression, parameters = member("user", key)
            clauses.append(f"CAST({expression} AS TEXT) = ?")
            values.extend([*parameters, wanted])
        else:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(events.user) WHERE CAST(json_each.value AS TEXT) = ?)"
            )
            values.append(filters.user)
    for key, wanted in filters.properties:
        expression, parameters = member("properties", key)
        clauses.append(f"CAST({expression} AS TEXT) = ?")
        values.extend([*parameters, wanted])
    if filters.since is not None:
        clauses.append("time_ns >= ?")
        values.append(filters.since)
    if filters.until is not None:
        clauses.append("time_ns < ?")
        values.append(filters.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def source(db: sqlite3.Connection) -> str:
    """The events to read: a store written before schema 2 has no ``service`` column (read-only,
    it cannot be upgraded here), so it reads as NULL."""
    if "service" in event_columns(db):
        return "events"
    return "(SELECT *, NULL AS service FROM events) AS events"


def moment(time_ns: int) -> dt.datetime:
    try:
        return _EPOCH + dt.timedelta(microseconds=time_ns // 1000)
    except (OverflowError, TypeError):
        return dt.datetime.max.replace(tzinfo=dt.timezone.utc) if time_ns > 0 else _EPOCH


def iso(time_ns: int) -> str:
    return moment(time_ns).isoformat()


def strict(value: Any) -> Any:
    """JSON-safe: NaN and infinities (which are not JSON) as the strings ``NaN``/``Infinity``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict(item) for item in value]
    return value


def loads(text: Any) -> Any:
    """A stored JSON column; a corrupt one is shown as its text rather than failing the listing."""
    if not isinstance(text, str):
        return text
    try:
        return strict(json.loads(text))
    except (ValueError, RecursionError):
        return text


def _record(row: Iterable[Any]) -> dict[str, Any]:
    (row_id, time_ns, name, kind, user, ip, method, path, route, agent, parameters, properties, trace_id,
     span_id, service) = row  # fmt: skip
    return {
        "id": row_id,
        "time_ns": time_ns,
        "time": iso(time_ns),
        "name": name,
        "type": kind,
        "user": loads(user),
        "client_ip": ip,
        "method": method,
        "path": path,
        "route": route,
        "user_agent": agent,
        "parameters": loads(parameters),
        "properties": loads(properties),
        "trace_id": trace_id,
        "span_id": span_id,
        "service": service,
    }


def events(db: sqlite3.Connection, filters: Filters, limit: int) -> list[dict[str, Any]]:
    """The most recent ``limit`` events that match, newest first."""
    clause, values = where(filters)
    query = f"SELECT {_COLUMNS} FROM {source(db)}{clause} ORDER BY time_ns DESC, id DESC LIMIT ?"
    return [_record(row) for row in db.execute(query, [*values, limit])]


def event(db: sqlite3.Connection, row_id: int) -> dict[str, Any] | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM {source(db)} WHERE id = ?", (row_id,)).fetchone()
    return None if row is None else _record(row)


def groups(db: sqlite3.Connection, filters: Filters, by: str, limit: int) -> list[dict[str, Any]]:
    """Counts per value of ``by``, most frequent first: events, distinct users, first and last seen."""
    expression, expression_values = group_expression(by)
    clause, values = where(filters)
    query = (
        f"SELECT {expression} AS value, COUNT(*) AS count, COUNT(DISTINCT NULLIF(user, '{{}}')),"
        f" MIN(time_ns), MAX(time_ns) FROM {source(db)}{clause}"
        " GROUP BY value ORDER BY count DESC, value LIMIT ?"
    )
    return [
        {"value": value, "count": count, "distinct_users": users, "first_ns": first, "last_ns": last}
        for value, count, users, first, last in db.execute(query, [*expression_values, *values, limit])
    ]


def timeline(db: sqlite3.Connection, filters: Filters, bucket_s: int) -> list[tuple[int, str, int]]:
    """(bucket start in ns, event name, count) for each bucket of ``bucket_s`` seconds."""
    clause, values = where(filters)
    width = bucket_s * 1_000_000_000
    query = (
        f"SELECT (time_ns / ?) * ? AS bucket, name, COUNT(*) FROM {source(db)}{clause}"
        " GROUP BY bucket, name ORDER BY bucket, name"
    )
    return [(int(b), str(n), int(c)) for b, n, c in db.execute(query, [width, width, *values])]
