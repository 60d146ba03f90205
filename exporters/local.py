"""``local``: the embedded default, a SQLite event store on this host.

WAL mode and a busy timeout make it safe for several worker processes of one app writing at
once (gunicorn, uWSGI). Each event row has a unique key (trace, span, name, time, position),
and rows are inserted with ``INSERT OR IGNORE``, so a batch retried after a partial failure
never duplicates events. Each process opens its own connection (a forked child reconnects).
``sqreen-otel events`` reads the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from sqreen_otel._model import EventExporter, SecurityEvent
from sqreen_otel._outcome import SUCCESS, ExportOutcome, ExportStatus

__all__ = ["SCHEMA", "LocalStoreExporter", "connect"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event_key TEXT NOT NULL UNIQUE,
    time_ns INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    user TEXT NOT NULL,          -- JSON object: the user identifiers
    client_ip TEXT,
    user_agent TEXT,
    method TEXT,
    path TEXT,
    route TEXT,
    parameters TEXT NOT NULL,    -- JSON object: query parameters, lists of values
    properties TEXT NOT NULL,    -- JSON object
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_name_time ON events (name, time_ns);
CREATE INDEX IF NOT EXISTS events_ip_time ON events (client_ip, time_ns);
"""


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout; creates the file and schema if needed.

    ``path`` is a plain file name (never a SQLite URI: ``#``, ``?`` and ``%`` are just
    characters). Several processes may create the store at the same moment (workers starting
    or exiting together): switching a new database to WAL takes an exclusive lock that does not
    wait on the busy timeout, so the set-up is retried briefly. Once in WAL mode it never
    changes again.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    connection = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    for attempt in range(_SETUP_ATTEMPTS):
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(SCHEMA)
            return connection
        except sqlite3.OperationalError:
            if attempt == _SETUP_ATTEMPTS - 1:
                connection.close()
                raise
            time.sleep(0.02 * (attempt + 1))
    return connection


_SETUP_ATTEMPTS = 20  # about 4 s of brief waits in all

_COLUMNS = (
    "event_key, time_ns, name, type, user, client_ip, user_agent, method, path, route, parameters,"
    " properties, trace_id, span_id"
)
_INSERT = f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ({', '.join('?' * 14)})"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def rows(events: Sequence[SecurityEvent]) -> list[tuple[Any, ...]]:
    """One row per security event (values already scrubbed upstream)."""
    result = []
    position: dict[tuple[str, str], int] = {}
    for event in events:
        trace_id, span_id = event.trace_id, event.span_id
        index = position[trace_id, span_id] = position.get((trace_id, span_id), -1) + 1  # within its span
        request = event.request
        result.append(
            (
                f"{trace_id}:{span_id}:{index}:{event.timestamp_ns}:{event.name}",
                event.timestamp_ns,
                event.name,
                event.event_type,
                _json(event.user_identifiers),
                request.client_ip,
                request.user_agent,
                request.method,
                request.path,
                request.route,
                _json(request.parameters),
                _json(event.properties),
                trace_id,
                span_id,
            )
        )
    return result


class LocalStoreExporter(EventExporter):
    """Writes security events to the SQLite store at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0

    def _db(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            self._connection = connect(self.path)  # a forked child never reuses the parent's
            self._pid = os.getpid()
        return self._connection

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        values = rows(events)
        if not values:
            return SUCCESS
        with self._lock:
            try:
                db = self._db()
                with db:
                    db.executemany(_INSERT, values)
            except sqlite3.Error as exc:  # locked, disk full, read-only: keep the batch and retry
                self._connection = None
                return ExportOutcome(ExportStatus.RETRY, detail=f"sqlite: {type(exc).__name__}")
        return SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None
