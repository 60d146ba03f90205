"""``sqreen-otel events``: the Event Explorer, on the local store.

Recent events as a table (time, name, user, client IP, path, properties), filtered by name,
user, client IP, property and time range; ``--group-by`` counts by any request field, user identifier or
property (the view a playbook author needs: which IPs failed to log in most?); ``--json`` for
scripts. Reads the SQLite store of the ``local`` exporter (``SQREEN_LOCAL_STORE``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from sqreen_otel._cli import actions as action_commands
from sqreen_otel._cli import playbooks as playbook_commands
from sqreen_otel._cli import ui as ui_commands
from sqreen_otel._cli.output import store_problem, table
from sqreen_otel._config import current_config
from sqreen_otel._display import safe_text
from sqreen_otel._explorer import query
from sqreen_otel._shipping.store import open_read_only
from sqreen_otel._version import __version__


def parse_time(value: str, now: dt.datetime | None = None) -> int:
    """Nanoseconds since the epoch from ``15m``/``2h``/``7d`` (ago) or an ISO 8601 time (UTC if
    naive); out-of-range times are clamped, never an error (``query.parse_time``)."""
    try:
        return query.parse_time(value, now)
    except ValueError:
        shown = safe_text(value[:64])
        raise argparse.ArgumentTypeError(f"not a time: {shown!r} (use 15m, 2h, 7d or ISO 8601)") from None


def parse_property(value: str) -> tuple[str, str]:
    key, sep, wanted = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"not a property: {safe_text(value[:64])!r} (use key=value)")
    return key, wanted


def parse_limit(value: str) -> int:
    """A row count from 1 to 1,000,000."""
    try:
        number = int(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {safe_text(value[:32])!r}") from None
    if not 1 <= number <= query.MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {query.MAX_LIMIT:,}")
    return number


def _filters(arguments: argparse.Namespace) -> query.Filters:
    return query.Filters(
        names=tuple(arguments.name or ()),
        user=arguments.user,
        ip=arguments.ip,
        service=arguments.service,
        properties=tuple(arguments.property or ()),
        since=arguments.since,
        until=arguments.until,
    )


def _iso(time_ns: int) -> str:
    return query.moment(time_ns).strftime("%Y-%m-%d %H:%M:%S")


def _compact(mapping: Any) -> str:
    if not isinstance(mapping, dict):
        return safe_text(str(mapping))
    return " ".join(f"{safe_text(str(key))}={safe_text(str(value))}" for key, value in mapping.items())


def _json_line(record: dict[str, Any]) -> str:
    """Strict JSON, ASCII only: control and bidirectional characters are \\u-escaped."""
    return json.dumps(query.strict(record), ensure_ascii=True, allow_nan=False, default=str)


def _events(db: sqlite3.Connection, arguments: argparse.Namespace, out: TextIO) -> None:
    fields = ("time", "name", "type", "user", "client_ip", "method", "path", "user_agent", "parameters",
              "properties", "trace_id", "service")  # fmt: skip
    records = query.events(db, _filters(arguments), arguments.limit)
    records.reverse()  # oldest of the most recent first, as a log reads
    if arguments.json:
        for record in records:
            out.write(_json_line({field: record[field] for field in fields}) + "\n")
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
    groups = [
        {"value": g["value"], "count": g["count"], "first": _iso(g["first_ns"]), "last": _iso(g["last_ns"])}
        for g in query.groups(db, _filters(arguments), arguments.group_by, arguments.limit)
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
    events.add_argument(
        "--property",
        action="append",
        type=parse_property,
        metavar="KEY=VALUE",
        help="only events whose property KEY is VALUE (compared as text; repeatable)",
    )
    events.add_argument("--service", help="only events of this app (its OpenTelemetry service.name)")
    events.add_argument("--since", type=parse_time, help="from this time: 15m, 2h, 7d ago, or ISO 8601")
    events.add_argument("--until", type=parse_time, help="before this time (same forms)")
    events.add_argument(
        "--limit", type=parse_limit, default=50, help="at most this many rows (1 to 1,000,000; default 50)"
    )
    events.add_argument(
        "--group-by",
        metavar="FIELD",
        help="count events by name, type, ip, path, route, method, user_agent, service, user (all the "
        "identifiers), user.<key>, "
        "param.<key> or a property key (properties.<key>)",
    )
    events.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    action_commands.add_parsers(commands, _Parser)
    playbook_commands.add_parsers(commands, _Parser)
    ui_commands.add_parsers(commands, _Parser)
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
    if arguments.command == "ui":
        return ui_commands.run(arguments, out, _fail)
    store = arguments.store or current_config().local_store
    problem = store_problem(store)
    if problem is not None:
        return _fail(problem)
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
