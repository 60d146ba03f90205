"""``sqreen-otel actions``: an operator responds by hand, in the shared action store.

``list``, ``block-ip``, ``block-user``, ``redirect-ip``, ``redirect-user``, ``remove``; with
``--duration`` (``30s``, ``15m``, ``2h``, ``7d``; absent: permanent). Actions are validated by
the same code as every other source; they reach every worker (every host, on Redis) within
``SQREEN_ACTIONS_REFRESH``. ``list`` shows the store's actions and the file's (read-only here).
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, TextIO

from sqreen_otel import _durations as durations
from sqreen_otel._cli.output import table
from sqreen_otel._config import current_config
from sqreen_otel._display import safe_text
from sqreen_otel._responses.actions import ActionError, action_label, parse_action
from sqreen_otel._responses.setup import action_store
from sqreen_otel._responses.sources import ActionsFile, FileInvalid, StoreUnavailable


def parse_duration(value: str) -> float:
    try:
        return durations.parse_duration(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {safe_text(value[:32])!r} (use 30s, 15m, 2h, 7d)"
        ) from None


def parse_identifier(value: str) -> tuple[str, str]:
    key, sep, item = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"not an identifier: {safe_text(value[:64])!r} (use key=value)")
    return key, item


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    actions = commands.add_parser(
        "actions",
        help="list, add or remove security actions (block or redirect an IP or a user)",
        description="Security actions in the shared action store (SQLite beside the event store, "
        "or Redis with SQREEN_REDIS_URL).",
    )
    verbs = actions.add_subparsers(dest="verb", required=True, parser_class=parser_class)
    listing = verbs.add_parser("list", help="the actions in force")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    for verb, target in (
        ("block-ip", "ip"),
        ("redirect-ip", "ip"),
        ("block-user", "user"),
        ("redirect-user", "user"),
    ):
        command = verbs.add_parser(verb, help=f"{verb.replace('-', ' ')} (added to the shared store)")
        if target == "ip":
            command.add_argument("cidrs", nargs="+", metavar="CIDR", help="IP addresses or CIDRs (v4 or v6)")
        else:
            command.add_argument(
                "identifiers",
                nargs="+",
                type=parse_identifier,
                metavar="KEY=VALUE",
                help="the user's identifiers",
            )
        if verb.startswith("redirect"):
            command.add_argument(
                "--url", required=True, help="where to redirect (absolute http or https URL)"
            )
        command.add_argument("--duration", type=parse_duration, help="30s, 15m, 2h, 7d (default: permanent)")
        command.add_argument("--id", dest="action_id", help="the action's id (default: a new one)")
    remove = verbs.add_parser("remove", help="remove an action by id")
    remove.add_argument("action_id", metavar="ID")


def run(arguments: argparse.Namespace, out: TextIO, fail: Callable[[str], int]) -> int:
    config = current_config()
    try:
        store = action_store(config)
    except ValueError as error:
        return fail(str(error))
    try:
        if arguments.verb == "list":
            return _list(store, config.actions_file, arguments.json, out, fail)
        if arguments.verb == "remove":
            if not store.remove(arguments.action_id):
                return fail(f"no action {arguments.action_id} in {store.description}")
            print(f"removed {safe_text(arguments.action_id)}", file=out)
            return 0
        return _add(store, arguments, out, fail)
    except StoreUnavailable as error:
        return fail(f"the action store ({store.description}) cannot be used: {error}")
    finally:
        store.close()


def _add(store: Any, arguments: argparse.Namespace, out: TextIO, fail: Callable[[str], int]) -> int:
    kind = arguments.verb.replace("-", "_")
    parameters: dict[str, Any] = {}
    if kind.endswith("_ip"):
        parameters["ip_cidr"] = list(arguments.cidrs)
    else:
        parameters["users"] = [dict(arguments.identifiers)]
    if kind.startswith("redirect_"):
        parameters["url"] = arguments.url
    raw = {
        "action_id": arguments.action_id or f"cli-{secrets.token_hex(6)}",
        "action": kind,
        "created_at": time.time(),
        "duration": arguments.duration,
        "parameters": parameters,
    }
    try:
        action = parse_action(raw, time.time())
    except ActionError as error:
        return fail(f"invalid action: {error}")
    store.put(action.to_json())
    until = "permanently" if action.expires_at is None else f"until {_iso(action.expires_at)}"
    print(f"added {action.action_id}: {kind} {until} ({store.description})", file=out)
    return 0


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _list(store: Any, path: str | None, as_json: bool, out: TextIO, fail: Callable[[str], int]) -> int:
    rows: list[tuple[str, object]] = [("store", raw) for raw in store.list_actions()]
    status = 0
    if path is not None:
        try:
            rows.extend(("file", raw) for raw in ActionsFile(path).read())
        except FileInvalid as error:  # the store's actions are still listed; the exit status says
            status = fail(f"SQREEN_ACTIONS_FILE {path}: {error}")
    now = time.time()
    shown = []
    for position, (source, raw) in enumerate(rows):
        try:
            action = parse_action(raw, now)
        except ActionError as error:  # shown, not fatal: the others are listed
            shown.append((source, action_label(raw, f"#{position}"), "invalid", str(error), ""))
            continue
        if not action.active(now):
            continue
        target = ", ".join(str(network) for network in action.networks) or "; ".join(
            ",".join(f"{key}={value}" for key, value in sorted(user)) for user in action.users
        )
        until = "permanent" if action.expires_at is None else _iso(action.expires_at)
        shown.append(
            (
                source,
                action.action_id,
                action.kind,
                target + (f" -> {action.url}" if action.url else ""),
                until,
            )
        )
    if as_json:
        for source, action_id, kind, target, until in shown:
            record = {
                "source": source,
                "action_id": action_id,
                "action": kind,
                "target": target,
                "until": until,
            }
            print(json.dumps(record, ensure_ascii=True), file=out)
        return status

    rows_shown = [[safe_text(str(cell)) for cell in row] for row in shown]
    table(("SOURCE", "ID", "ACTION", "TARGET", "UNTIL (UTC)"), rows_shown, (6, 40, 13, 80, 20), out)
    return status
