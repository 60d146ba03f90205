"""Security responses from the settings: the action store, the registry and the block pages.

``install(config)`` runs in ``configure()``: it loads the actions once (so a block in force at
start-up applies from the first request) and starts enforcing; ``action_store(config)`` is the
store the CLI and the playbooks write to (the same one the workers read).
"""

from __future__ import annotations

import logging
import os

from sqreen_otel._config import Config
from sqreen_otel._log import log_every
from sqreen_otel._responses.enforcement import ResponseSettings, use_settings
from sqreen_otel._responses.pages import DEFAULT_HTML, BlockPages
from sqreen_otel._responses.registry import ActionRegistry, use_registry
from sqreen_otel._responses.sources import (
    ActionsFile,
    ActionStore,
    RedisActionStore,
    SqliteActionStore,
)
from sqreen_otel._stats import stats

MAX_PAGE_BYTES = 1024 * 1024


def default_actions_store(config: Config) -> str:
    """``actions.db`` beside the local event store (every process of the host shares it)."""
    return config.actions_store or os.path.join(os.path.dirname(config.local_store), "actions.db")


def action_store(config: Config) -> ActionStore:
    """Redis with ``SQREEN_REDIS_URL`` (a fleet), else the host's SQLite store. Raises
    ``ValueError`` when Redis is asked for and the redis package is missing."""
    if config.redis_url is not None:
        return RedisActionStore(config.redis_url, prefix=config.redis_prefix)
    return SqliteActionStore(default_actions_store(config))


def _page(path: str | None, what: str) -> bytes | None:
    """An operator's page, served as is; None (the default page) if unset or unreadable."""
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            body = handle.read(MAX_PAGE_BYTES + 1)
    except OSError as error:
        body = b""
        reason = type(error).__name__
    else:
        reason = "larger than 1 MiB" if len(body) > MAX_PAGE_BYTES else ""
    if reason:
        logging.getLogger("sqreen_otel").error(
            "sqreen_otel cannot use %s %s (%s): the default block page is served.", what, path, reason
        )
        return None
    return body


def install(config: Config) -> None:
    """Enforce the actions of ``config``'s sources from now on (or nothing, when off)."""
    if config.disable or not config.responses:
        use_registry(None)
        use_settings(ResponseSettings())
        return
    try:
        store: ActionStore | None = action_store(config)
    except ValueError as error:
        store = None
        stats.add("action_store_unavailable")
        log_every(
            "action_store_config",
            60.0,
            logging.ERROR,
            "sqreen_otel: %s; only SQREEN_ACTIONS_FILE's actions are enforced.",
            error,
        )
    registry = ActionRegistry(
        ActionsFile(config.actions_file) if config.actions_file else None,
        store,
        refresh_s=config.actions_refresh,
    )
    registry.load_now()
    pages = BlockPages(
        config.block_status,
        _page(config.block_html_file, "SQREEN_BLOCK_HTML_FILE") or DEFAULT_HTML.encode(),
        _page(config.block_json_file, "SQREEN_BLOCK_JSON_FILE"),
    )
    use_settings(
        ResponseSettings(
            enabled=True,
            pages=pages,
            ip_passlist=config.ip_passlist,
            path_passlist=config.path_passlist,
            policy=config.client_ip_policy,
            heuristic_ip=config.trusted_proxies is None,
            hmac_key=config.user_id_hmac_key.encode() if config.user_id_hmac_key else None,
        )
    )
    use_registry(registry)
