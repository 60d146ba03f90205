"""``sqreen-otel playbooks check FILE`` and ``playbooks test FILE``: validate a playbook file,
and replay recorded events through it (``--from-store``, or ``--events`` in the explorer's
``--json`` format) to see which playbooks would fire, for whom and when, without acting.

The replay runs the live evaluator's engine on the events' own times, in memory: the way to
craft a playbook from the Event Explorer's data.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from sqreen_otel._cli.output import store_problem, table
from sqreen_otel._config import current_config
from sqreen_otel._display import safe_text
from sqreen_otel._explorer import query
from sqreen_otel._playbooks.engine import Engine, Firing
from sqreen_otel._playbooks.fields import Observed
from sqreen_otel._playbooks.react import action_for
from sqreen_otel._playbooks.schema import Playbook, PlaybookError, describe, load_file
from sqreen_otel._playbooks.windows import MemoryWindows
from sqreen_otel._shipping.store import event_from_row, open_read_only

MAX_LINE_BYTES = 1024 * 1024


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    playbooks = commands.add_parser(
        "playbooks",
        help="check a playbook file, or replay recorded events through it",
        description="Playbooks (SQREEN_PLAYBOOKS_FILE): rules that turn events into security actions.",
    )
    verbs = playbooks.add_subparsers(dest="verb", required=True, parser_class=parser_class)
    check = verbs.add_parser("check", help="validate a playbook file")
    check.add_argument("file", metavar="PLAYBOOKS.toml")
    test = verbs.add_parser(
        "test", help="replay recorded events: which playbooks would fire (nothing is done)"
    )
    test.add_argument("file", metavar="PLAYBOOKS.toml")
    source = test.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-store", action="store_true", help="the local event store's events")
    source.add_argument(
        "--events", metavar="FILE.jsonl", help="events as `sqreen-otel events --json` prints them"
    )
    test.add_argument("--store", help="the event store (default: SQREEN_LOCAL_STORE or its default path)")
    test.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def run(arguments: argparse.Namespace, out: TextIO, fail: Callable[[str], int]) -> int:
    try:
        playbooks = load_file(arguments.file)
    except PlaybookError as error:
        return fail(str(error))
    if arguments.verb == "check":
        for line in describe(playbooks):
            print(safe_text(line), file=out)
        print(f"{len(playbooks)} playbook(s) valid in {safe_text(arguments.file)}", file=out)
        return 0
    try:
        events = (
            _from_store(arguments.store or current_config().local_store, playbooks)
            if arguments.from_store
            else _from_lines(arguments.events)
        )
        firings = replay(playbooks, events)
    except (OSError, ValueError) as error:
        return fail(str(error))
    except sqlite3.Error as error:
        return fail(f"the event store cannot be read ({type(error).__name__}: {error})")
    _print(firings, arguments.json, out)
    return 0


def replay(playbooks: tuple[Playbook, ...], events: Iterable[Observed]) -> list[Firing]:
    """The firings of ``playbooks`` over ``events`` (in time order), in memory, acting on nothing."""
    engine = Engine(playbooks, MemoryWindows())
    return engine.observe_all(sorted(events, key=lambda event: event.time))


def _from_store(path: str, playbooks: tuple[Playbook, ...]) -> list[Observed]:
    problem = store_problem(path)
    if problem is not None:
        raise ValueError(problem)
    db = open_read_only(path)
    try:
        return list(store_events(db, playbooks))
    finally:
        db.close()


def store_events(
    db: sqlite3.Connection,
    playbooks: tuple[Playbook, ...],
    since: int | None = None,
    until: int | None = None,
) -> Iterator[Observed]:
    """The stored events the playbooks watch, oldest first (``since``/``until``: ns bounds)."""
    names = sorted(frozenset().union(*(playbook.watched for playbook in playbooks))) if playbooks else []
    if not names:
        return
    clause, values = query.where(query.Filters(names=tuple(names), since=since, until=until))
    rows = db.execute(
        "SELECT event_key, time_ns, name, type, user, client_ip, user_agent, method, path, route,"
        f" parameters, properties, trace_id, span_id FROM events{clause} ORDER BY time_ns, id",
        values,
    )
    for row in rows:
        try:
            yield Observed.from_event(event_from_row(row))
        except (ValueError, TypeError, RecursionError):
            continue  # a corrupt row: the others still replay


def _from_lines(path: str) -> Iterator[Observed]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if len(line) > MAX_LINE_BYTES:
                raise ValueError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                yield Observed.from_json(record)
            except (ValueError, TypeError, RecursionError) as error:
                reason = (
                    "nested too deeply" if isinstance(error, RecursionError) else safe_text(str(error)[:120])
                )
                raise ValueError(
                    f"{path}:{number}: not an event of `sqreen-otel events --json` ({reason})"
                ) from None


def _would_do(firing: Firing) -> list[str]:
    done = []
    for response in firing.playbook.responses:
        raw = action_for(firing, response, firing.at) if response.kind not in ("notify", "log") else None
        if response.kind in ("notify", "log"):
            done.append(response.kind)
        elif raw is None:
            done.append(f"{response.kind} (no target)")
        else:
            parameters = raw["parameters"]
            target = ",".join(parameters.get("ip_cidr", [])) or ";".join(
                ",".join(f"{key}={value}" for key, value in user.items())
                for user in parameters.get("users", [])
            )
            length = "permanently" if response.duration is None else f"for {response.duration:g}s"
            done.append(f"{response.kind} {target} {length}")
    return done


def firing_record(firing: Firing) -> dict[str, Any]:
    """A firing as ``playbooks test --json`` prints it (and the web explorer's dry run shows it)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(firing.at)),
        "playbook": firing.playbook.name,
        "group_by": firing.playbook.group_by.text,
        "group": firing.group,
        "count": firing.reached,
        "window_seconds": firing.playbook.window,
        "would": _would_do(firing),
    }


def _print(firings: list[Firing], as_json: bool, out: TextIO) -> None:
    if as_json:
        for firing in firings:
            out.write(json.dumps(firing_record(firing), ensure_ascii=True, allow_nan=False) + "\n")
        return
    if not firings:
        out.write("no playbook would fire\n")
        return
    rows = [
        (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(firing.at)),
            safe_text(firing.playbook.name),
            safe_text(f"{firing.playbook.group_by.text}={firing.group}"),
            str(firing.reached),
            safe_text("; ".join(_would_do(firing))),
        )
        for firing in firings
    ]
    table(("TIME (UTC)", "PLAYBOOK", "GROUP", "COUNT", "WOULD"), rows, (19, 28, 40, 6, 60), out)
