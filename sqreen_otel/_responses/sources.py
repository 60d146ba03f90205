"""Where actions come from: an operator's file, and the shared action store.

* ``ActionsFile`` (``SQREEN_ACTIONS_FILE``): ``{"actions": [...]}``, written by operators or
  their configuration management; re-read when it changes (size, time or inode), at most 64
  MiB. A file that does not parse keeps the last good set (logged, counted).
* ``SqliteActionStore`` (default, ``actions.db`` beside the event store): one table, safe for
  every process of the host (WAL, busy timeout); a version number bumped by every write tells
  readers, in one tiny query, whether anything changed.
* ``RedisActionStore`` (``SQREEN_REDIS_URL``): a hash of actions and a version counter, shared
  by every host; short socket timeouts so an outage costs the refresher, never a request.

A store keeps each action's JSON with its ``created_at``; expired actions are ignored by
readers and deleted by the next write. ``list_actions`` raises ``StoreUnavailable`` when the
store cannot be read (the registry then keeps the last known set); a body that is not JSON is
listed as ``Unreadable``, rejected alone like any invalid action.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

from sqreen_otel import _sqlite
from sqreen_otel._responses.actions import Unreadable

MAX_FILE_BYTES = 64 * 1024 * 1024
_SETUP_ATTEMPTS = 20


class StoreUnavailable(Exception):
    """The store cannot be read or written now (down, locked, unreachable)."""


class FileInvalid(Exception):
    """The actions file cannot be used (reason safe to log: no content from the file)."""


_UNREAD = object()


class ActionsFile:
    """An operator's JSON file of actions (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._signature: object = _UNREAD

    def changed(self) -> bool:
        """Whether the file changed since the last ``read`` (a stat, no read; True before the first)."""
        return self._stat() != self._signature

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def read(self) -> list[Any]:
        """The file's raw actions; ``FileInvalid`` if it is missing, too large or not the format."""
        signature = self._stat()
        self._signature = signature
        if signature is None:
            raise FileInvalid("the file does not exist or cannot be read")
        if signature[1] > MAX_FILE_BYTES:
            raise FileInvalid(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise FileInvalid(f"the file cannot be read ({type(error).__name__})") from None
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as error:
            line = getattr(error, "lineno", None)
            where = f" (line {line})" if line is not None else ""
            raise FileInvalid(f"the file is not valid JSON{where}") from None
        if not isinstance(document, Mapping) or not isinstance(document.get("actions"), list):
            raise FileInvalid('the file must hold a JSON object {"actions": [...]}')
        return list(document["actions"])


class ActionStore(Protocol):
    """A shared store of actions, written by the CLI and the playbooks."""

    description: str

    def version(self) -> object:
        """Changes whenever an action is added or removed (cheap)."""

    def list_actions(self) -> list[object]:
        """Every stored action's JSON (expired ones included; readers filter), ``Unreadable``
        for a body that is not JSON."""

    def put(self, action: Mapping[str, Any]) -> None:
        """Add or replace an action (by ``action_id``); deletes expired ones."""

    def remove(self, action_id: str) -> bool:
        """Delete an action; False if there was none with that id."""

    def close(self) -> None:
        """Release the store's connections (a later call may open new ones)."""


def decode(action_id: object, body: object) -> object:
    """One stored action's JSON object; ``Unreadable`` (rejected alone, named by the key it is
    stored at) when it is not JSON, is too deeply nested to decode, or is not an object."""
    try:
        value = json.loads(body)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError):
        return Unreadable(str(action_id))
    if not isinstance(value, dict):
        return Unreadable(str(action_id), "its stored body is not a JSON object")
    return value


def _expired(action: object, now: float) -> bool:
    if not isinstance(action, Mapping):
        return False  # never deleted behind the operator's back: it is listed as invalid
    expires = _expires_at(action)
    return expires is not None and expires <= now


_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    action_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,          -- the action's JSON (with created_at)
    expires_at REAL              -- NULL: permanent
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('version', 0);
"""


class SqliteActionStore:
    """The host's action store: a SQLite file every process of the host shares.

    Only writers (the CLI, the playbooks) create the schema and wait for the write lock (up to
    ``timeout``). Readers (every worker's refresher, and ``configure()``'s first load) never
    write, and wait at most ``read_timeout`` per query: a store that someone holds locked costs
    them a moment and the last known set, never a stalled start-up. A store no writer has
    created yet reads as empty.
    """

    def __init__(self, path: str, *, timeout: float = 2.0, read_timeout: float = 0.25) -> None:
        if "\x00" in path:
            raise ValueError("a store path cannot contain NUL")
        self.path = path
        self.description = f"SQLite {path}"
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._connection = _sqlite.ProcessConnection()
        self._schema_ready = False

    def _open(self) -> sqlite3.Connection:
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            return sqlite3.connect(
                self.path, timeout=self._read_timeout, isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as error:
            raise StoreUnavailable(f"{type(error).__name__}") from None

    def _db(self) -> sqlite3.Connection:
        connection, opened = self._connection.get(self._open)
        if opened:
            self._schema_ready = False  # once per connection: see _create_schema
        return connection

    def _create_schema(self, db: sqlite3.Connection) -> None:
        """WAL and the tables, once per connection (writers only). Retried briefly: switching a
        new database to WAL takes a lock that does not wait on the busy timeout, and several
        writers may create the store at the same moment."""
        if self._schema_ready:
            return
        deadline = time.monotonic() + 2 * self._timeout
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError:
                if attempt == _SETUP_ATTEMPTS - 1 or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02 * (attempt + 1))
        self._schema_ready = True

    def _run(self, work: Any, *, write: bool = False) -> Any:
        try:
            db = self._db()
            db.execute(
                f"PRAGMA busy_timeout = {int(1000 * (self._timeout if write else self._read_timeout))}"
            )
            if write:
                self._create_schema(db)
            return work(db)
        except sqlite3.Error as error:
            self.close()  # suspect: the next call opens a new one
            raise StoreUnavailable(type(error).__name__) from None

    def _read(self, query: str) -> list[Any] | None:
        """A reader's rows; None while the store has no tables (no writer created them yet)."""

        def work(db: sqlite3.Connection) -> list[Any] | None:
            try:
                rows: list[Any] = db.execute(query).fetchall()
            except sqlite3.OperationalError as error:
                if str(error).startswith("no such table"):
                    return None
                raise
            return rows

        result: list[Any] | None = self._run(work)
        return result

    def version(self) -> object:
        rows = self._read("SELECT value FROM meta WHERE name = 'version'")
        if rows is None:
            return 0  # an empty store: the first write makes it 1
        if not rows:  # deleted by hand: the next write restores it
            raise StoreUnavailable("the version row is missing")
        return rows[0][0]

    def list_actions(self) -> list[object]:
        rows = self._read("SELECT action_id, body FROM actions ORDER BY rowid") or []
        return [decode(action_id, body) for action_id, body in rows]

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                for statement, values in statements:
                    changed += db.execute(statement, values).rowcount
                db.execute(
                    "DELETE FROM actions WHERE expires_at IS NOT NULL AND expires_at <= ?", (time.time(),)
                )
                db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('version', 0)")
                db.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return changed

        result: int = self._run(work, write=True)
        return result

    def put(self, action: Mapping[str, Any]) -> None:
        body = json.dumps(action, separators=(",", ":"), allow_nan=False)
        expires = _expires_at(action)
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO actions (action_id, body, expires_at) VALUES (?, ?, ?)",
                    (action["action_id"], body, expires),
                )
            ]
        )

    def remove(self, action_id: str) -> bool:
        return self._write([("DELETE FROM actions WHERE action_id = ?", (action_id,))]) > 0

    def close(self) -> None:
        """Close our connection (a later call opens a new one); a parent's is only abandoned."""
        self._connection.close()


def _expires_at(action: Mapping[str, Any]) -> float | None:
    duration, created = action.get("duration"), action.get("created_at")
    if isinstance(duration, int | float) and isinstance(created, int | float):
        try:
            return float(created) + float(duration)
        except OverflowError:  # an integer too large for a float: never expires
            return None
    return None


class RedisActionStore:
    """The fleet's action store on Redis (``SQREEN_REDIS_URL``; needs ``sqreen-otel[redis]``)."""

    def __init__(self, url: str, *, prefix: str = "sqreen-otel:", timeout: float = 0.5) -> None:
        try:
            import redis
        except ImportError:
            raise ValueError(
                "SQREEN_REDIS_URL needs the redis package: pip install 'sqreen-otel[redis]'"
            ) from None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("SQREEN_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        self.description = f"Redis {parts.hostname or parts.path}:{parts.port or ''}".rstrip(":")
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._hash = prefix + "actions"
        self._version = prefix + "actions:version"

    def _call(self, work: Any) -> Any:
        try:
            return work(self._client)
        except self._errors as error:
            raise StoreUnavailable(type(error).__name__) from None

    def version(self) -> object:
        return self._call(lambda client: client.get(self._version))

    def list_actions(self) -> list[object]:
        entries = self._call(lambda client: client.hgetall(self._hash))
        return [decode(key, body) for key, body in entries.items()]

    def _prune(self, client: Any) -> None:
        now = time.time()
        entries = client.hgetall(self._hash).items()
        stale = [key for key, body in entries if _expired(decode(key, body), now)]
        if stale:
            client.hdel(self._hash, *stale)

    def put(self, action: Mapping[str, Any]) -> None:
        body = json.dumps(action, separators=(",", ":"), allow_nan=False)

        def work(client: Any) -> None:
            self._prune(client)
            pipe = client.pipeline(transaction=True)
            pipe.hset(self._hash, action["action_id"], body)
            pipe.incr(self._version)
            pipe.execute()

        self._call(work)

    def remove(self, action_id: str) -> bool:
        def work(client: Any) -> bool:
            pipe = client.pipeline(transaction=True)
            pipe.hdel(self._hash, action_id)
            pipe.incr(self._version)
            removed, _ = pipe.execute()
            return bool(removed)

        result: bool = self._call(work)
        return result

    def close(self) -> None:
        self._client.close()
