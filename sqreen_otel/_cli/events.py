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
import math
import os
import re
import sqlite3
import stat
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from sqreen_otel._cli import actions as action_commands
from sqreen_otel._cli import playbooks as playbook_commands
from sqreen_otel._cli.output import table
from sqreen_otel._config import current_config
from sqreen_otel._display import safe_text
from sqreen_otel._shipping.store import event_columns, open_read_only
from sqreen_otel._version import __version__

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
    "service": "service",
}
_RELATIVE = re.compile(r"^(\d{1,12}(?:\.\d{1,9})?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_LIMIT = 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_time(value: str, now: dt.datetime | None = None) -> int:
    """Nanoseconds since the epoch from ``15m``/``2h``/``7d`` (ago) or an ISO 8601 time (UTC if naive).

    Times before 1970 or too far ahead for SQLite's 64-bit integers are clamped, never an error.
    """
    now = now or dt.datetime.now(tz=dt.timezone.utc)
    relative = _RELATIVE.match(value.strip())
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        ago = (now - _EPOCH).total_seconds() - seconds
        return min(max(int(ago * 1e9), 0), 2**63 - 1)
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        shown = safe_text(value[:64])
        raise argparse.ArgumentTypeError(f"not a time: {shown!r} (use 15m, 2h, 7d or ISO 8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return min(max(int((moment - _EPOCH).total_seconds() * 1e9), 0), 2**63 - 1)  # fits SQLite's int64


def parse_limit(value: str) -> int:
    """A row count from 1 to 1,000,000."""
    try:
        number = int(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {safe_text(value[:32])!r}") from None
    if not 1 <= number <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {_MAX_LIMIT:,}")
    return number


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
    if arguments.service:
        clauses.append("service = ?")
        values.append(arguments.service)
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


def _moment(time_ns: int) -> dt.datetime:
    """A stored time as a datetime (a corrupt or out-of-range one clamps to the datetime range)."""
    try:
        return _EPOCH + dt.timedelta(microseconds=time_ns // 1000)
    except (OverflowError, TypeError):
        return dt.datetime.max.replace(tzinfo=dt.timezone.utc) if time_ns > 0 else _EPOCH


def _iso(time_ns: int) -> str:
    return _moment(time_ns).strftime("%Y-%m-%d %H:%M:%S")


def _compact(mapping: Any) -> str:
    if not isinstance(mapping, dict):
        return safe_text(str(mapping))
    return " ".join(f"{safe_text(str(key))}={safe_text(str(value))}" for key, value in mapping.items())


def _strict(value: Any) -> Any:
    """JSON-safe: NaN and infinities (which are not JSON) as the strings ``NaN``/``Infinity``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict(item) for item in value]
    return value


def _loads(text: Any) -> Any:
    """A stored JSON column; a corrupt one is shown as its text rather than failing the listing."""
    if not isinstance(text, str):
        return text
    try:
        return _strict(json.loads(text))
    except ValueError:
        return text


def _json_line(record: dict[str, Any]) -> str:
    """Strict JSON, ASCII only: control and bidirectional characters are \\u-escaped."""
    return json.dumps(_strict(record), ensure_ascii=True, allow_nan=False, default=str)


def _source(db: sqlite3.Connection) -> str:
    """The events to read: a store written before schema 2 has no ``service`` column (read-only,
    it cannot be upgraded here), so it reads as NULL."""
    if "service" in event_columns(db):
        return "events"
    return "(SELECT *, NULL AS service FROM events) AS events"


def _events(db: sqlite3.Connection, arguments: argparse.Namespace, out: TextIO) -> None:
    where, values = _where(arguments)
    columns = (
        "time_ns, name, type, user, client_ip, method, path, user_agent, parameters, properties, trace_id,"
        " service"
    )
    query = f"SELECT {columns} FROM {_source(db)}{where} ORDER BY time_ns DESC, id DESC LIMIT ?"
    records = []
    for row in db.execute(query, [*values, arguments.limit]):
        time_ns, name, kind, user, ip, method, path, agent, parameters, properties, trace_id, service = row
        records.append(
            {
                "time_ns": time_ns,
                "time": _moment(time_ns).isoformat(),
                "name": name,
                "type": kind,
                "user": _loads(user),
                "client_ip": ip,
                "method": method,
                "path": path,
                "user_agent": agent,
                "parameters": _loads(parameters),
                "properties": _loads(properties),
                "trace_id": trace_id,
                "service": service,
            }
        )
    records.reverse()  # oldest of the most recent first, as a log reads
    if arguments.json:
        for record in records:
            out.write(_json_line({k: v for k, v in record.items() if k != "time_ns"}) + "\n")
        return
    if not records:
        out.write("no events match\n")
        return
    rows = [
        (
            _iso(r["time_ns"]),
            safe_text(str(r["name"])),
            _compact(r["user"]),
            safe_text(str(r["client_ip"] or "")),
            safe_text(f"{r['method'] or ''} {r['path'] or ''}".strip()),
            _compact(r["properties"]),
        )
        for r in records
    ]
    table(
        ("TIME (UTC)", "EVENT", "USER", "CLIENT IP", "REQUEST", "PROPERTIES"),
        rows,
        (19, 28, 32, 39, 40, 60),
        out,
    )


def _groups(db: sqlite3.Connection, arguments: argparse.Namespace, out: TextIO) -> None:
    expression, expression_values = _group_expression(arguments.group_by)
    where, values = _where(arguments)
    query = (
        f"SELECT {expression} AS value, COUNT(*) AS count, MIN(time_ns), MAX(time_ns)"
        f" FROM {_source(db)}{where} GROUP BY value ORDER BY count DESC, value LIMIT ?"
    )
    groups = [
        {"value": value, "count": count, "first": _iso(first), "last": _iso(last)}
        for value, count, first, last in db.execute(query, [*expression_values, *values, arguments.limit])
    ]
    if arguments.json:
        for group in groups:
            fields = {k: group[k] for k in ("count", "first", "last")}
            out.write(_json_line({arguments.group_by: group["value"], **fields}) + "\n")
        return
    if not groups:
        out.write("no events match\n")
        return
    rows = [
        (
            "(none)" if g["value"] is None else safe_text(str(g["value"])),
            str(g["count"]),
            g["first"],
            g["last"],
        )
        for g in groups
    ]
    header = safe_text(arguments.group_by.upper())
    table((header, "COUNT", "FIRST (UTC)", "LAST (UTC)"), rows, (60, 8, 19, 19), out)


class _Parser(argparse.ArgumentParser):
    """Errors on one line, with hostile argument text escaped."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {safe_text(message)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sqreen-otel", description="sqreen-otel tools")
    parser.add_argument("--version", action="version", version=f"sqreen-otel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    events = commands.add_parser(
        "events",
        help="explore the security events of the local store",
        description="Recent security events from the local store (SQREEN_LOCAL_STORE).",
    )
    events.add_argument("--store", help="the SQLite store (default: SQREEN_LOCAL_STORE or its default path)")
    events.add_argument("--name", action="append", help="only this event name (repeatable)")
    events.add_argument("--user", help="only events of this user: any identifier value, or key=value")
    events.add_argument("--ip", help="only this client IP")
    events.add_argument("--service", help="only events of this app (its OpenTelemetry service.name)")
    events.add_argument("--since", type=parse_time, help="from this time: 15m, 2h, 7d ago, or ISO 8601")
    events.add_argument("--until", type=parse_time, help="before this time (same forms)")
    events.add_argument(
        "--limit", type=parse_limit, default=50, help="at most this many rows (1 to 1,000,000; default 50)"
    )
    events.add_argument(
        "--group-by",
        metavar="FIELD",
        help="count events by name, type, ip, path, route, method, user_agent, service, user.<key>, "
        "param.<key> or a property key (properties.<key>)",
    )
    events.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    action_commands.add_parsers(commands, _Parser)
    playbook_commands.add_parsers(commands, _Parser)
    return parser


def _fail(message: str) -> int:
    print(f"sqreen-otel: {safe_text(message)}", file=sys.stderr)
    return 1


def _tolerant(stream: TextIO) -> None:
    """Never fail on a terminal that cannot show a character (``PYTHONIOENCODING=ascii``)."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    _tolerant(sys.stderr)
    arguments = build_parser().parse_args(argv)
    if out is None:
        out = sys.stdout
        _tolerant(out)
    if arguments.command == "actions":
        return action_commands.run(arguments, out, _fail)
    if arguments.command == "playbooks":
        return playbook_commands.run(arguments, out, _fail)
    store = arguments.store or current_config().local_store
    try:
        mode = os.stat(store).st_mode
    except OSError:
        return _fail(f"no event store at {store} (set SQREEN_LOCAL_STORE or --store)")
    if not stat.S_ISREG(mode):
        return _fail(f"{store} is not an event store (not a regular file)")
    try:
        db = open_read_only(store)
    except sqlite3.Error as error:
        return _fail(f"cannot open {store}: {error}")
    try:
        if arguments.group_by:
            _groups(db, arguments, out)
        else:
            _events(db, arguments, out)
    except sqlite3.Error as error:
        return _fail(f"cannot read {store}: {error}")
    finally:
        db.close()
    return 0
