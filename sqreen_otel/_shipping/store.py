"""The event store on this host: an embedded SQLite file that is both the local store and the
durable queue of the remote exporters.

* Every process of the host (gunicorn workers...) writes its scrubbed events here, in WAL
  mode with a busy timeout. ``events.id`` is the queue order: ``AUTOINCREMENT`` (an id is
  never reused, even once the bounds emptied the table) and SQLite serialises writers, so an
  id becomes visible only after every smaller one.
* Apps sharing a store never ship each other's events. A *route* is one remote destination
  as one app sees it: exporter, ``service.name``, and the destination's identity (URL,
  credentials, headers), hashed. A writing process tags its rows with its *origin* (its
  service and set of routes) and registers which routes that origin feeds (``routes``).
  A route's drainer sends only the rows of origins that feed it, so an app with another
  token, URL or service never receives them; apps configured alike share one queue.
* Each route has a cursor (``deliveries``): every row it carries with ``id <= delivered_id``
  was delivered (or dropped, counted in ``deliveries.dropped``). A lease on the cursor lets
  one process drain at a time; a dead process's lease expires (or is seen dead at once, on
  this host) and another worker, or the restarted app, delivers what it left.
* Bounded by size and age (``SQREEN_STORE_MAX_MB``, ``SQREEN_STORE_MAX_AGE``). The size bound
  is the file's: the oldest rows go, whoever wrote them. The age bound is each app's own: it
  deletes only that origin's rows. Either way the undelivered rows deleted are added to each
  route's ``dropped`` count, which that route's drainers report (``stats()``, ``flush()``).
* ``stored_ns`` is stamped inside the writing transaction, so it grows with the id (the age
  bound finds its cut by binary search over ids).

The path is a plain file name, never a SQLite URI. Readers (the Event Explorer) open it
read-only and never create files; they read stores of every schema version.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqreen_otel._http.request_context import RequestContext
from sqreen_otel._shipping.event_model import SecurityEvent

SCHEMA_VERSION = 4
_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    stored_ns INTEGER NOT NULL,  -- when it reached the store (the age bound)
    origin TEXT NOT NULL DEFAULT ''  -- the writing app's origin ('' : none, or written before schema 3)
)
"""
_SCHEMA = """
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_name_time ON events (name, time_ns);
CREATE INDEX IF NOT EXISTS events_ip_time ON events (client_ip, time_ns);
CREATE INDEX IF NOT EXISTS events_origin_id ON events (origin, id);
CREATE TABLE IF NOT EXISTS routes (
    route TEXT NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (route, origin)
);
CREATE TABLE IF NOT EXISTS deliveries (
    route TEXT PRIMARY KEY,
    exporter TEXT NOT NULL,
    service TEXT,
    delivered_id INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,  -- undelivered rows the bounds deleted, ever
    dropped_reported INTEGER NOT NULL DEFAULT 0,  -- how many of them a drainer reported
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS legacy_cursors (  -- the queue of a schema-2 store, adopted once
    exporter TEXT NOT NULL,
    service TEXT NOT NULL,
    delivered_id INTEGER NOT NULL,
    PRIMARY KEY (exporter, service)
)
"""
# Columns of the events table, by schema version, for the upgrade copy.
_V2_ONLY = ("service", "stored_ns")
COLUMNS = (
    "event_key, time_ns, name, type, user, client_ip, user_agent, method, path, route, parameters,"
    " properties, trace_id, span_id, service"
)
_INSERT = f"INSERT OR IGNORE INTO events ({COLUMNS}, stored_ns, origin) VALUES ({', '.join('?' * 17)})"
_SETUP_ATTEMPTS = 20  # about 4 s of brief waits in all
RETRY_AFTER_OWNER = "retry-after"  # a lease kept by no process: a destination's Retry-After
_IN_ROUTE = "origin IN (SELECT origin FROM routes WHERE route = ?)"

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Origin:
    """What one app writes as: its ``service.name`` and the routes (exporter -> route id) it feeds."""

    id: str
    service: str | None
    routes: Mapping[str, str]


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8", "surrogatepass"))
        hasher.update(b"\x00")
    return hasher.hexdigest()[:32]


def origin_for(service: str | None, destinations: Mapping[str, str]) -> Origin:
    """The origin of an app with ``service`` and remote ``destinations`` (exporter -> identity).

    Identities (URL, token, headers) only enter a hash: the store never holds a credential.
    """
    service_part = "\x01" if service is None else f"s:{service}"
    routes = {name: _digest("route", name, service_part, identity) for name, identity in destinations.items()}
    return Origin(_digest("origin", service_part, *sorted(routes.values())), service, routes)


def connect(path: str, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection for writing, in WAL mode with a busy timeout; creates the file and schema.

    Several processes may create the store at the same moment (workers starting or exiting
    together): switching a new database to WAL takes an exclusive lock that does not wait on
    the busy timeout, so the set-up is retried briefly. Once in WAL mode it never changes again.
    """
    if "\x00" in path:
        raise ValueError("a store path cannot contain NUL")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    connection = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                _create_schema(connection)
                return connection
            except sqlite3.OperationalError:
                if attempt == _SETUP_ATTEMPTS - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))
    except BaseException:  # not a store, or never set up: the caller gets no connection to close
        connection.close()
        raise
    return connection


def _create_schema(connection: sqlite3.Connection) -> None:
    if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    with _transaction(connection):
        if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return  # another process upgraded it meanwhile
        present = {row[1] for row in connection.execute("PRAGMA table_info(events)")}
        if "origin" in present:  # schema 3: one column more
            columns = {row[1] for row in connection.execute("PRAGMA table_info(deliveries)")}
            if "dropped_reported" not in columns:
                connection.execute(
                    "ALTER TABLE deliveries ADD COLUMN dropped_reported INTEGER NOT NULL DEFAULT 0"
                )
        elif present:
            _upgrade(connection, present)
        else:
            connection.execute(_EVENTS_TABLE.format(name="events"))
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        if "origin" not in present and "service" in present:
            _keep_legacy_cursors(connection)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


LEGACY_PREFIX = "legacy:"  # the origin of a schema-2 store's rows: "legacy:" + service


def _upgrade(connection: sqlite3.Connection, present: set[str]) -> None:
    """Rebuild an older events table as the current one, keeping every event.

    Rows stored before ``stored_ns`` existed (or stamped 0) count as stored now: an upgrade
    never ages out history. A schema-1 store had no queue (origin ''). A schema-2 store's rows
    get the origin ``legacy:<service>`` and its cursors are kept (``legacy_cursors``): the
    first app of that service and exporter to start adopts them, so what was queued before
    the upgrade is still delivered.
    """
    now = time.time_ns()
    connection.execute(_EVENTS_TABLE.format(name="events_new"))
    service = "service" if "service" in present else "NULL"
    stored = "CASE WHEN stored_ns > 0 THEN stored_ns ELSE ? END" if "stored_ns" in present else "?"
    origin = f"'{LEGACY_PREFIX}' || COALESCE(service, '')" if "service" in present else "''"
    base = COLUMNS.rsplit(",", 1)[0]  # everything but service
    connection.execute(
        f"INSERT INTO events_new (id, {COLUMNS}, stored_ns, origin)"
        f" SELECT id, {base}, {service}, {stored}, {origin} FROM events ORDER BY id",
        (now,),
    )
    connection.execute("DROP TABLE events")
    connection.execute("ALTER TABLE events_new RENAME TO events")
    columns = {row[1] for row in connection.execute("PRAGMA table_info(deliveries)")}
    if "service" in columns and "route" not in columns:  # schema 2's queue
        connection.execute("ALTER TABLE deliveries RENAME TO deliveries_v2")


def _keep_legacy_cursors(connection: sqlite3.Connection) -> None:
    """Schema 2's cursors, for the first app of each service and exporter to adopt."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "deliveries_v2" not in tables:
        return
    connection.execute(
        "INSERT OR IGNORE INTO legacy_cursors (exporter, service, delivered_id)"
        " SELECT exporter, service, delivered_id FROM deliveries_v2"
    )
    connection.execute("DROP TABLE deliveries_v2")


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self._connection.execute("COMMIT" if kind is None else "ROLLBACK")


def event_columns(connection: sqlite3.Connection) -> frozenset[str]:
    """The events table's columns (a reader may face a store of any schema version)."""
    return frozenset(row[1] for row in connection.execute("PRAGMA table_info(events)"))


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


def event_row(event: SecurityEvent, index: int, service: str | None) -> Row:
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
        event.key or f"{trace_id}:{span_id}:{index}:{time_ns}:{event.name}",
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


def insert(connection: sqlite3.Connection, rows: Iterable[Row], origin: str) -> None:
    """Write rows as ``origin`` in one transaction, stamped with the time they reach the store
    (a row already stored, by its event key, is skipped)."""
    with _transaction(connection):
        now = time.time_ns()
        connection.executemany(_INSERT, ((*row, now, origin) for row in rows))


def register(connection: sqlite3.Connection, origin: Origin) -> None:
    """Declare which routes ``origin`` feeds; a new route's cursor starts after the rows stored
    so far (call it before the origin's first row)."""
    if not origin.routes:
        return
    with _transaction(connection):
        last = connection.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        for exporter, route in origin.routes.items():
            connection.execute(
                "INSERT OR IGNORE INTO routes (route, origin) VALUES (?, ?)", (route, origin.id)
            )
            new = connection.execute(
                "INSERT OR IGNORE INTO deliveries (route, exporter, service, delivered_id)"
                " VALUES (?, ?, ?, ?)",
                (route, exporter, origin.service, last),
            ).rowcount
            if new:
                _adopt_legacy(connection, exporter, route, origin.service)


def _adopt_legacy(connection: sqlite3.Connection, exporter: str, route: str, service: str | None) -> None:
    """A new route of a service whose schema-2 queue was not delivered: take it over."""
    key = "" if service is None else service
    row = connection.execute(
        "SELECT delivered_id FROM legacy_cursors WHERE exporter = ? AND service = ?", (exporter, key)
    ).fetchone()
    if row is None:
        return
    connection.execute(
        "INSERT OR IGNORE INTO routes (route, origin) VALUES (?, ?)", (route, LEGACY_PREFIX + key)
    )
    connection.execute("UPDATE deliveries SET delivered_id = ? WHERE route = ?", (row[0], route))
    connection.execute("DELETE FROM legacy_cursors WHERE exporter = ? AND service = ?", (exporter, key))


def take_drop_report(connection: sqlite3.Connection, route: str, owner: str) -> int:
    """The drops of ``route`` not reported yet, now marked reported (by the lease holder only:
    each drop is reported once, by one process, even if it happened while the app was down)."""
    with _transaction(connection):
        row = connection.execute(
            "SELECT dropped - dropped_reported FROM deliveries WHERE route = ? AND lease_owner = ?",
            (route, owner),
        ).fetchone()
        if row is None or row[0] <= 0:
            return 0
        connection.execute("UPDATE deliveries SET dropped_reported = dropped WHERE route = ?", (route,))
    return int(row[0])


def cursor_of(connection: sqlite3.Connection, route: str) -> tuple[int, int]:
    """(delivered_id, dropped) of ``route`` ((0, 0) if unknown)."""
    row = connection.execute(
        "SELECT delivered_id, dropped FROM deliveries WHERE route = ?", (route,)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def take_lease(connection: sqlite3.Connection, route: str, owner: str, seconds: float) -> int | None:
    """Lease ``route``'s cursor for ``seconds`` (renewing ours); its position, or None if another
    holds it (a live process, or a destination's ``Retry-After`` not yet over)."""
    now = time.time()
    with _transaction(connection):
        row = connection.execute(
            "SELECT delivered_id, lease_owner, lease_until FROM deliveries WHERE route = ?", (route,)
        ).fetchone()
        if row is None or (row[1] not in (None, owner) and row[2] > now and _alive(row[1])):
            return None
        connection.execute(
            "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE route = ?",
            (owner, now + seconds, route),
        )
    return int(row[0])


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def lease_owner() -> str:
    """This process as a lease owner: ``host:pid-namespace:pid:random`` (a reused pid is another owner)."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{secrets.token_hex(4)}"


def _alive(owner: str) -> bool:
    """False only for an owner that is certainly dead: a process of this host and pid namespace
    (containers sharing a host name have their own) that is gone."""
    if owner == RETRY_AFTER_OWNER:
        return True
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or parts[1] != _pid_namespace():
        return True
    if not parts[2].isdigit():
        return True
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def release_lease(
    connection: sqlite3.Connection, route: str, owner: str, not_before_epoch: float | None = None
) -> None:
    """Give up our lease; with ``not_before_epoch`` (a destination's ``Retry-After`` still
    running) nobody may send before then, whichever process comes next."""
    if not_before_epoch is not None and not_before_epoch > time.time():
        connection.execute(
            "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE route = ? AND lease_owner = ?",
            (RETRY_AFTER_OWNER, not_before_epoch, route, owner),
        )
        return
    connection.execute(
        "UPDATE deliveries SET lease_owner = NULL, lease_until = 0 WHERE route = ? AND lease_owner = ?",
        (route, owner),
    )


def hold_lease(connection: sqlite3.Connection, route: str, owner: str, until_epoch: float) -> None:
    """Keep our lease until ``until_epoch`` (a retry delay that binds every process)."""
    connection.execute(
        "UPDATE deliveries SET lease_until = ? WHERE route = ? AND lease_owner = ?",
        (until_epoch, route, owner),
    )


def advance(connection: sqlite3.Connection, route: str, owner: str, to_id: int) -> bool:
    """Move the cursor to ``to_id`` if we still hold the lease; False if we lost it."""
    cursor = connection.execute(
        "UPDATE deliveries SET delivered_id = MAX(delivered_id, ?) WHERE route = ? AND lease_owner = ?",
        (to_id, route, owner),
    )
    return cursor.rowcount == 1


def pending_rows(
    connection: sqlite3.Connection, route: str, after_id: int, limit: int
) -> list[tuple[int, Row]]:
    """Up to ``limit`` (id, row) that ``route`` carries after ``after_id``, in queue order."""
    query = f"SELECT id, {COLUMNS} FROM events WHERE id > ? AND {_IN_ROUTE} ORDER BY id LIMIT ?"
    return [(row[0], row[1:]) for row in connection.execute(query, (after_id, route, limit))]


def backlog(connection: sqlite3.Connection, route: str, at_most: int | None = None) -> int:
    """How many rows ``route`` has not delivered yet (counting stops at ``at_most``)."""
    delivered, _ = cursor_of(connection, route)
    limit = -1 if at_most is None else at_most
    query = f"SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE id > ? AND {_IN_ROUTE} LIMIT ?)"
    return int(connection.execute(query, (delivered, route, limit)).fetchone()[0])


def waiting_elsewhere(connection: sqlite3.Connection, route: str) -> int:
    """Rows waiting on the other routes of ``route``'s exporter and service: another app sending
    elsewhere, or this app before a change of destination or credentials (never sent here)."""
    row = connection.execute("SELECT exporter, service FROM deliveries WHERE route = ?", (route,)).fetchone()
    if row is None:
        return 0
    others = connection.execute(
        "SELECT route FROM deliveries WHERE exporter = ? AND service IS ? AND route != ?", (*row, route)
    ).fetchall()
    return sum(backlog(connection, other) for (other,) in others)


def prune(connection: sqlite3.Connection, max_bytes: int, max_age_s: float, service: str | None) -> None:
    """Delete ``service``'s rows past the age bound (whatever destination they were queued
    for: an app's retention follows it across a change of token or URL), then the oldest rows
    (anyone's) while the store is over its size bound; the undelivered ones are added to their
    routes' ``dropped``.

    Bounded work per call: a store far over its bound shrinks over the next calls.
    """
    cutoff = time.time_ns() - int(max_age_s * 1e9)
    _delete_below(connection, _first_kept(connection, cutoff), (service,))
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
        _delete_below(connection, row[0] if row else _end_id(connection), None)


def _first_kept(connection: sqlite3.Connection, cutoff_ns: int) -> int:
    """The first id stored at ``cutoff_ns`` or later, by binary search over ids (``stored_ns``
    grows with the id: it is stamped inside the serialised write), so it needs no index."""
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


def _delete_below(connection: sqlite3.Connection, below_id: int, service: tuple[str | None] | None) -> None:
    """Delete rows with ``id < below_id`` (only the service's and those of no queue, when
    ``service`` is given; else anyone's), adding the undelivered ones to each route's ``dropped``."""
    if below_id <= 0:
        return
    scope, values = ("", ()) if service is None else (" AND (service IS ? OR origin = '')", service)
    with _transaction(connection):
        if (
            connection.execute(
                f"SELECT 1 FROM events WHERE id < ?{scope} LIMIT 1", (below_id, *values)
            ).fetchone()
            is None
        ):
            return
        for route, delivered in connection.execute("SELECT route, delivered_id FROM deliveries").fetchall():
            if delivered + 1 >= below_id:
                continue
            lost = connection.execute(
                f"SELECT COUNT(*) FROM events WHERE id > ? AND id < ? AND {_IN_ROUTE}{scope}",
                (delivered, below_id, route, *values),
            ).fetchone()[0]
            if lost:
                connection.execute(
                    "UPDATE deliveries SET dropped = dropped + ? WHERE route = ?", (lost, route)
                )
        connection.execute(f"DELETE FROM events WHERE id < ?{scope}", (below_id, *values))
