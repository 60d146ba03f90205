"""``sqreen-otel events``: the Event Explorer, on the local store.

Recent events as a table (time, name, user, client IP, path, properties), filtered by name,
user, client IP and time range; ``--group-by`` counts by any request field, user identifier or
property (the view a playbook author needs: which IPs failed to log in most?); ``--json`` for
scripts. Reads the SQLite store of the ``local`` exporter (``SQREEN_LOCAL_STORE``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sqreen_otel._config import current_config

_FIELDS = {
    "name": "name",
    "type": "type",
    "ip": "client_ip",
    "client_ip": "client_ip",
    "path": "path",
    "route": "route",
    "method": "method",
    "verb": "method",
    "user_agent": "user_agent",
}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, now: dt.datetime | None = None) -> int:
    """Nanoseconds since the epoch from ``15m``/``2h``/``7d`` (ago) or an ISO 8601 time (UTC if naive)."""
    now = now or dt.datetime.now(tz=dt.timezone.utc)
    relative = _RELATIVE.match(value.strip())
    if relative:
        moment = now - dt.timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    else:
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a time: {value!r} (use 15m, 2h, 7d or ISO 8601)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
    return min(max(int(moment.timestamp() * 1e9), 0), 2**63 - 1)  # nanoseconds fit SQLite's int64


def _group_expression(field: str) -> tuple[str, list[Any]]:
    """SQL for a --group-by field: a column, ``user.<key>`` or a property (``properties.<key>`` or bare)."""
    if field in _FIELDS:
        return _FIELDS[field], []
    for prefix, column in (("user.", "user"), ("properties.", "properties"), ("property.", "properties")):
        if field.startswith(prefix):
            return f"json_extract({column}, ?)", [_json_path(field[len(prefix) :])]
    if field.startswith(("param.", "parameters.")):
        return "json_extract(parameters, ?)", [_json_path(field.split(".", 1)[1]) + "[0]"]
    return "json_extract(properties, ?)", [_json_path(field)]


def _json_path(key: str) -> str:
    return "$." + json.dumps(key)  # a quoted member: keys may contain dots


def _where(arguments: argparse.Namespace) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    values: list[Any] = []
    if arguments.name:
        clauses.append(f"name IN ({', '.join('?' for _ in arguments.name)})")
        values.extend(arguments.name)
    if arguments.ip:
        clauses.append("client_ip = ?")
        values.append(arguments.ip)
    if arguments.user:
        key, sep, wanted = arguments.user.partition("=")
        if sep:
            clauses.append("CAST(json_extract(user, ?) AS TEXT) = ?")
            values.extend([_json_path(key), wanted])
        else:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(events.user) WHERE CAST(json_each.value AS TEXT) = ?)"
            )
            values.append(arguments.user)
    if arguments.since is not None:
        clauses.append("time_ns >= ?")
        values.append(arguments.since)
    if arguments.until is not None:
        clauses.append("time_ns < ?")
        values.append(arguments.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def _iso(time_ns: int) -> str:
    moment = dt.datetime.fromtimestamp(time_ns / 1e9, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _compact(mapping: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in mapping.items())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int], out: TextIO) -> None:
    sizes = [
        min(width, max([len(h), *(len(r[i]) for r in rows)]))
        for i, (h, width) in enumerate(zip(headers, widths, strict=True))
    ]
    line = "  ".join(h.ljust(size) for h, size in zip(headers, sizes, strict=True))
    out.write(line.rstrip() + "\n" + "  ".join("-" * size for size in sizes) + "\n")
    for row in rows:
        out.write(
            "  ".join(_clip(cell, size).ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip()
            + "\n"
        )


def _events(db: sqlite3.Connection, arguments: argparse.Namespace, out: TextIO) -> None:
    where, values = _where(arguments)
    columns = (
        "time_ns, name, type, user, client_ip, method, path, user_agent, parameters, properties, trace_id"
    )
    query = f"SELECT {columns} FROM events{where} ORDER BY time_ns DESC, id DESC LIMIT ?"
    records = []
    for row in db.execute(query, [*values, arguments.limit]):
        time_ns, name, kind, user, ip, method, path, agent, parameters, properties, trace_id = row
        records.append(
            {
                "time_ns": time_ns,
                "time": dt.datetime.fromtimestamp(time_ns / 1e9, tz=dt.timezone.utc).isoformat(),
                "name": name,
                "type": kind,
                "user": json.loads(user),
                "client_ip": ip,
                "method": method,
                "path": path,
                "user_agent": agent,
                "parameters": json.loads(parameters),
                "properties": json.loads(properties),
                "trace_id": trace_id,
            }
        )
    records.reverse()  # oldest of the most recent first, as a log reads
    if arguments.json:
        for record in records:
            out.write(
                json.dumps({k: v for k, v in record.items() if k != "time_ns"}, ensure_ascii=False) + "\n"
            )
        return
    if not records:
        out.write("no events match\n")
        return
    rows = [
        (
            _iso(r["time_ns"]),
            r["name"],
            _compact(r["user"]),
            r["client_ip"] or "",
            f"{r['method'] or ''} {r['path'] or ''}".strip(),
            _compact(r["properties"]),
        )
        for r in records
    ]
    _table(
        ("TIME (UTC)", "EVENT", "USER", "CLIENT IP", "REQUEST", "PROPERTIES"),
        rows,
        (19, 28, 32, 39, 40, 60),
        out,
    )


def _groups(db: sqlite3.Connection, arguments: argparse.Namespace, out: TextIO) -> None:
    expression, expression_values = _group_expression(arguments.group_by)
    where, values = _where(arguments)
    query = (
        f"SELECT {expression} AS value, COUNT(*) AS count, MIN(time_ns), MAX(time_ns) FROM events{where}"
        " GROUP BY value ORDER BY count DESC, value LIMIT ?"
    )
    groups = [
        {"value": value, "count": count, "first": _iso(first), "last": _iso(last)}
        for value, count, first, last in db.execute(query, [*expression_values, *values, arguments.limit])
    ]
    if arguments.json:
        for group in groups:
            out.write(
                json.dumps(
                    {arguments.group_by: group["value"], **{k: group[k] for k in ("count", "first", "last")}}
                )
                + "\n"
            )
        return
    if not groups:
        out.write("no events match\n")
        return
    rows = [
        ("(none)" if g["value"] is None else str(g["value"]), str(g["count"]), g["first"], g["last"])
        for g in groups
    ]
    _table((arguments.group_by.upper(), "COUNT", "FIRST (UTC)", "LAST (UTC)"), rows, (60, 8, 19, 19), out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sqreen-otel", description="sqreen-otel tools")
    commands = parser.add_subparsers(dest="command", required=True)
    events = commands.add_parser(
        "events",
        help="explore the security events of the local store",
        description="Recent security events from the local store (SQREEN_LOCAL_STORE).",
    )
    events.add_argument("--store", help="the SQLite store (default: SQREEN_LOCAL_STORE or its default path)")
    events.add_argument("--name", action="append", help="only this event name (repeatable)")
    events.add_argument("--user", help="only events of this user: any identifier value, or key=value")
    events.add_argument("--ip", help="only this client IP")
    events.add_argument("--since", type=parse_time, help="from this time: 15m, 2h, 7d ago, or ISO 8601")
    events.add_argument("--until", type=parse_time, help="before this time (same forms)")
    events.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    events.add_argument(
        "--group-by",
        metavar="FIELD",
        help="count events by name, type, ip, path, route, method, user_agent, user.<key>, "
        "param.<key> or a property key (properties.<key>)",
    )
    events.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    out = out or sys.stdout
    store = arguments.store or current_config().local_store
    if not os.path.exists(store):
        print(f"sqreen-otel: no event store at {store} (set SQREEN_LOCAL_STORE or --store)", file=sys.stderr)
        return 1
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10.0)
    try:
        if arguments.group_by:
            _groups(db, arguments, out)
        else:
            _events(db, arguments, out)
    except sqlite3.Error as error:
        print(f"sqreen-otel: cannot read {store}: {error}", file=sys.stderr)
        return 1
    finally:
        db.close()
    return 0
