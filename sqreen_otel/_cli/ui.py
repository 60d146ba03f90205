"""``sqreen-otel ui``: serve the web Event Explorer on the local store (and the shared action
store) until interrupted. Binds to 127.0.0.1 unless told otherwise; prints the address to
open, which carries this run's token."""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from typing import Any, TextIO

from sqreen_otel._cli.output import store_problem
from sqreen_otel._config import current_config
from sqreen_otel._display import safe_text
from sqreen_otel._responses.setup import action_store, default_actions_store
from sqreen_otel._responses.sources import ActionStore


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    del parser_class  # no sub-commands
    ui = commands.add_parser(
        "ui",
        help="serve the web Event Explorer on 127.0.0.1",
        description="The Event Explorer in the browser: timeline, filters, group-by, event details, "
        "playbook firings and dry runs, and blocking IPs and users.",
    )
    ui.add_argument("--store", help="the event store (default: SQREEN_LOCAL_STORE or its default path)")
    ui.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    ui.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    ui.add_argument("--read-only", action="store_true", help="never change the action store")


def run(arguments: argparse.Namespace, out: TextIO, fail: Callable[[str], int]) -> int:
    from sqreen_otel._ui.api import Api, Context
    from sqreen_otel._ui.server import ExplorerServer

    config = current_config()
    store = arguments.store or config.local_store
    problem = store_problem(store)
    if problem is not None:
        return fail(problem)
    if not 0 <= arguments.port <= 65535:
        return fail("--port: 0 to 65535")
    try:
        actions = action_store(config)
    except ValueError as error:
        return fail(str(error))
    read_only = arguments.read_only or not _writable(config.redis_url, default_actions_store(config))

    def shared() -> ActionStore:
        return actions

    context = Context(store, shared, config.actions_file, config.playbooks_file, read_only)
    try:
        server = ExplorerServer((arguments.host, arguments.port), Api(context), secrets.token_urlsafe(32))
    except OSError as error:
        return fail(f"cannot listen on {arguments.host}:{arguments.port} ({error.strerror or error})")
    print(f"sqreen-otel Event Explorer on {safe_text(store)}", file=out)
    if read_only:
        print("read-only: the action store is not writable here (or --read-only)", file=out)
    print(f"open {server.url}", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _writable(redis_url: str | None, path: str) -> bool:
    """Whether this user may change the action store (Redis: assumed, refused answers say so)."""
    if redis_url is not None:
        return True
    if os.path.exists(path):
        return os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)
    folder = os.path.dirname(path) or "."
    while not os.path.exists(folder):
        folder = os.path.dirname(folder) or "."
    return os.access(folder, os.W_OK)
