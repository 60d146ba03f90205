"""The event store on this host: an embedded SQLite file that is both the local store and the
durable queue of the remote exporters.

* Every process of the host (gunicorn workers...) writes its scrubbed events here, in WAL
  mode with a busy timeout; ``events.id`` is the queue order (SQLite serialises writers, so an
  id becomes visible only after every smaller one).
* A remote exporter's progress is a cursor per (exporter, service) in ``deliveries``: every
  event of that service with ``id <= delivered_id`` was delivered (or dropped, counted). A
  lease on the cursor lets one process drain at a time; a dead process's lease expires and
  another worker, or the restarted app, delivers what it left.
* Bounded by size and age (``SQREEN_STORE_MAX_MB``, ``SQREEN_STORE_MAX_AGE``): the oldest
  events are deleted, and the undelivered among them counted as dropped.
* ``service`` (the OpenTelemetry resource's ``service.name``) keeps apps sharing a store apart.

The path is a plain file name, never a SQLite URI. Readers (the Event Explorer) open it
read-only and never create files.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from sqreen_otel._model import SecurityEvent
from sqreen_otel._request_context import RequestContext

SCHEMA_VERSION = 2
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
    span_id TEXT NOT NULL,
    service TEXT,                -- service.name of the app that recorded it
    stored_ns INTEGER NOT NULL DEFAULT 0  -- when it reached the store (the age bound)
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_name_time ON events (name, time_ns);
CREATE INDEX IF NOT EXISTS events_ip_time ON events (client_ip, time_ns);
CREATE TABLE IF NOT EXISTS deliveries (
    exporter TEXT NOT NULL,
    service TEXT NOT NULL,
    delivered_id INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (exporter, service)
);
"""
# Added in schema 2 (a store written by an earlier version is upgraded in place).
_UPGRADE = (
    ("service", "ALTER TABLE events ADD COLUMN service TEXT"),
    ("stored_ns", "ALTER TABLE events ADD COLUMN stored_ns INTEGER NOT NULL DEFAULT 0"),
)
_LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS events_service_id ON events (service, id);
"""
COLUMNS = (
    "event_key, time_ns, name, type, user, client_ip, user_agent, method, path, route, parameters,"
    " properties, trace_id, span_id, service, stored_ns"
)
_INSERT = f"INSERT OR IGNORE INTO events ({COLUMNS}) VALUES ({', '.join('?' * 16)})"
_SETUP_ATTEMPTS = 20  # about 4 s of brief waits in all
_NO_SERVICE = ""  # the deliveries key of events recorded without a service.name

Row = tuple[Any, ...]


def connect(path: str) -> sqlite3.Connection:
    """A connection for writing, in WAL mode with a busy timeout; creates the file and schema.

    Several processes may create the store at the same moment (workers starting or exiting
    together): switching a new database to WAL takes an exclusive lock that does not wait on
    the busy timeout, so the set-up is retried briefly. Once in WAL mode it never changes again.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    connection = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    for attempt in range(_SETUP_ATTEMPTS):
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            _create_schema(connection)
            return connection
        except sqlite3.OperationalError:
            if attempt == _SETUP_ATTEMPTS - 1:
                connection.close()
                raise
            time.sleep(0.02 * (attempt + 1))
    return connection


def _create_schema(connection: sqlite3.Connection) -> None:
    if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        present = {row[1] for row in connection.execute("PRAGMA table_info(events)")}
        for column, statement in _UPGRADE:
            if column not in present:
                connection.execute(statement)
        for statement in _LATE_INDEXES.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def open_read_only(path: str) -> sqlite3.Connection:
    """The store, read-only, by path: never creates the file nor its -wal/-shm companions.

    ``immutable`` would skip locking; instead ``mode=ro`` keeps readers consistent with
    concurrent writers. A WAL store whose companions do not exist (no writer since the last
    clean close) is opened in ``nolock`` read-only mode, which needs none.
    """
    quoted = urllib.parse.quote(os.path.abspath(path))
    wal_present = os.path.exists(path + "-wal") or os.path.exists(path + "-shm")
    suffix = "?mode=ro" if wal_present else "?mode=ro&immutable=1"
    return sqlite3.connect(f"file:{quoted}{suffix}", uri=True, timeout=10.0)


_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode  # reused


def event_row(event: SecurityEvent, index: int, service: str | None, stored_ns: int) -> Row:
    """One store row (values already scrubbed upstream); ``index``: the event's rank in its span.

    Raises ``ValueError``/``TypeError``/``OverflowError`` for an event that cannot be stored
    (the caller drops that event alone).
    """
    trace_id, span_id = event.trace_id, event.span_id
    request = event.request
    time_ns = int(event.timestamp_ns)
    if not 0 <= time_ns < 2**63:
        raise OverflowError("timestamp out of range")
    return (
        f"{trace_id}:{span_id}:{index}:{time_ns}:{event.name}",
        time_ns,
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
        service,
        stored_ns,
    )


def event_from_row(row: Sequence[Any]) -> SecurityEvent:
    """A stored event back as a ``SecurityEvent`` (for the remote exporters)."""
    (key, time_ns, name, kind, user, ip, agent, method, path, route, parameters, properties, trace, span) = (
        row[:14]
    )
    return SecurityEvent(
        name=name,
        event_type=kind,
        timestamp_ns=time_ns,
        properties=json.loads(properties),
        user_identifiers=json.loads(user),
        request=RequestContext(ip, agent, method, path, route, json.loads(parameters)),
        trace_id=trace,
        span_id=span,
        key=key,
    )


def insert(connection: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Write rows in one transaction (a row already stored, by its event key, is skipped)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany(_INSERT, rows)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def service_key(service: str | None) -> str:
    return service if service is not None else _NO_SERVICE


def _service_clause(service: str | None) -> str:
    return "service IS NULL" if service is None else "service = ?"


def _service_values(service: str | None) -> list[Any]:
    return [] if service is None else [service]


def open_cursor(connection: sqlite3.Connection, exporter: str, service: str | None) -> int:
    """The cursor of ``exporter`` for ``service``; a new one starts after the events stored so far."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        row = connection.execute(
            "SELECT delivered_id FROM deliveries WHERE exporter = ? AND service = ?",
            (exporter, service_key(service)),
        ).fetchone()
        if row is None:
            last = connection.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            connection.execute(
                "INSERT INTO deliveries (exporter, service, delivered_id) VALUES (?, ?, ?)",
                (exporter, service_key(service), last),
            )
            delivered = int(last)
        else:
            delivered = int(row[0])
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return delivered


def take_lease(
    connection: sqlite3.Connection, exporter: str, service: str | None, owner: str, seconds: float
) -> int | None:
    """Lease the cursor for ``seconds`` (renewing ours); its position, or None if another holds it."""
    now = time.time()
    connection.execute("BEGIN IMMEDIATE")
    try:
        row = connection.execute(
            "SELECT delivered_id, lease_owner, lease_until FROM deliveries"
            " WHERE exporter = ? AND service = ?",
            (exporter, service_key(service)),
        ).fetchone()
        if row is None or (row[1] not in (None, owner) and row[2] > now and _alive(row[1])):
            connection.execute("ROLLBACK")
            return None
        connection.execute(
            "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE exporter = ? AND service = ?",
            (owner, now + seconds, exporter, service_key(service)),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return int(row[0])


def lease_owner() -> str:
    """This process's name as a lease owner: ``host:pid:random`` (a restarted pid is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _alive(owner: str) -> bool:
    """False only for an owner that is certainly dead: a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def release_lease(connection: sqlite3.Connection, exporter: str, service: str | None, owner: str) -> None:
    connection.execute(
        "UPDATE deliveries SET lease_owner = NULL, lease_until = 0"
        " WHERE exporter = ? AND service = ? AND lease_owner = ?",
        (exporter, service_key(service), owner),
    )


def hold_lease(
    connection: sqlite3.Connection, exporter: str, service: str | None, owner: str, until_epoch: float
) -> None:
    """Keep our lease until ``until_epoch`` (a retry delay that binds every process)."""
    connection.execute(
        "UPDATE deliveries SET lease_until = ? WHERE exporter = ? AND service = ? AND lease_owner = ?",
        (until_epoch, exporter, service_key(service), owner),
    )


def advance(
    connection: sqlite3.Connection, exporter: str, service: str | None, owner: str, to_id: int
) -> bool:
    """Move the cursor to ``to_id`` if we still hold the lease; False if we lost it."""
    cursor = connection.execute(
        "UPDATE deliveries SET delivered_id = MAX(delivered_id, ?)"
        " WHERE exporter = ? AND service = ? AND lease_owner = ?",
        (to_id, exporter, service_key(service), owner),
    )
    return cursor.rowcount == 1


def pending_rows(
    connection: sqlite3.Connection, service: str | None, after_id: int, limit: int
) -> list[tuple[int, Row]]:
    """Up to ``limit`` (id, row) of ``service`` stored after ``after_id``, in queue order."""
    query = (
        f"SELECT id, {COLUMNS} FROM events WHERE {_service_clause(service)} AND id > ? ORDER BY id LIMIT ?"
    )
    return [
        (row[0], row[1:]) for row in connection.execute(query, [*_service_values(service), after_id, limit])
    ]


def last_id(connection: sqlite3.Connection, service: str | None) -> int:
    query = f"SELECT COALESCE(MAX(id), 0) FROM events WHERE {_service_clause(service)}"
    return int(connection.execute(query, _service_values(service)).fetchone()[0])


def prune(
    connection: sqlite3.Connection,
    max_bytes: int,
    max_age_s: float,
    exporters: Sequence[str],
    service: str | None,
) -> dict[str, int]:
    """Delete events past the age bound, then the oldest while the store is over its size bound.

    Returns, per exporter in ``exporters`` (their cursors for ``service``), how many of its
    undelivered events were deleted, so the caller can count them as dropped. Bounded work per
    call: a store far over its bound shrinks over the next calls.
    """
    dropped = dict.fromkeys(exporters, 0)
    cutoff = time.time_ns() - int(max_age_s * 1e9)
    _delete_below(connection, _first_kept(connection, cutoff), dropped, service)
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    for _ in range(64):
        used = (
            connection.execute("PRAGMA page_count").fetchone()[0]
            - connection.execute("PRAGMA freelist_count").fetchone()[0]
        ) * page_size
        if used <= max_bytes:
            break
        count = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        if not count:
            break
        share = max(1, int(count * min(0.5, (used - max_bytes) / used + 0.01)))
        row = connection.execute("SELECT id FROM events ORDER BY id LIMIT 1 OFFSET ?", (share,)).fetchone()
        _delete_below(connection, row[0] if row else _end_id(connection), dropped, service)
    return dropped


def _first_kept(connection: sqlite3.Connection, cutoff_ns: int) -> int:
    """The first id stored at ``cutoff_ns`` or later, by binary search over ids (``stored_ns``
    grows with the id, near enough: writers are serialised), so no index on it is needed."""
    low, high = connection.execute("SELECT MIN(id), MAX(id) FROM events").fetchone()
    if low is None:
        return 0
    high += 1  # an id above every stored event: everything expired
    while low < high:
        middle = (low + high) // 2
        row = connection.execute(
            "SELECT id, stored_ns FROM events WHERE id >= ? ORDER BY id LIMIT 1", (middle,)
        ).fetchone()
        if row is None or row[1] >= cutoff_ns:
            high = middle  # ids in [middle, row id) do not exist: the same bound
        else:
            low = row[0] + 1
    return int(low)


def _end_id(connection: sqlite3.Connection) -> int:
    """An id above every stored event."""
    return int(connection.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1


def _delete_below(
    connection: sqlite3.Connection, below_id: int, dropped: dict[str, int], service: str | None
) -> None:
    """Delete events with ``id < below_id``; count, per exporter, the undelivered ones of ``service``."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for name in dropped:
            row = connection.execute(
                "SELECT delivered_id FROM deliveries WHERE exporter = ? AND service = ?",
                (name, service_key(service)),
            ).fetchone()
            if row is not None:
                query = f"SELECT COUNT(*) FROM events WHERE {_service_clause(service)} AND id > ? AND id < ?"
                values = [*_service_values(service), row[0], below_id]
                dropped[name] += connection.execute(query, values).fetchone()[0]
        connection.execute("DELETE FROM events WHERE id < ?", (below_id,))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
