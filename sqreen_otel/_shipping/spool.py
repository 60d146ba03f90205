"""The spool: spans with security events go from the request thread to the store on disk.

* ``submit`` runs on the thread that ended a span: an O(1) append under a lock held for a few
  instructions, never I/O, never scrubbing.
* A writer thread (one per process) wakes every ``spool_interval`` seconds (0.5 by default),
  or at once for a full batch or a flush: it scrubs the staged spans' events (``event_model``),
  hands them to the console exporter if there is one, encodes one row per event and writes
  them to the store in one transaction. So an event reaches the disk, scrubbed, about half a
  second after its span ended; what a SIGTERM or kill -9 can lose is that last half second.
* One event that cannot be encoded is dropped alone, counted by reason (``unencodable``).
* A store that cannot be written (read-only or full disk, permissions) does not lose events
  at once: their rows are held in memory (bounded by ``max_queue_length``, oldest dropped and
  counted), an error is logged every minute, and the writer retries each tick.
* The staging buffer is bounded too: past ``max_queue_length`` staged events the oldest are
  dropped and counted (``queue_full``), so RAM stays flat under any overload.
* After ``fork()`` (checked on every submit as well) the child starts empty, with a lock,
  thread and connection of its own; what the parent staged is the parent's to write.
"""

from __future__ import annotations

import collections
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan

from sqreen_otel import _sqlite
from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import log_every, logger
from sqreen_otel._recording.routing import MAX_OPEN_CARRIER_S, end_open_carriers
from sqreen_otel._scrubbing.scrubber import Scrubber
from sqreen_otel._shipping import store as _store
from sqreen_otel._shipping.event_model import EventExporter, SecurityEvent, scrubbed_events
from sqreen_otel._stats import stats

_PRUNE_EVERY_S = 60.0


@dataclass(frozen=True)
class SpoolSettings:
    interval: float
    batch_size: int
    max_queue_length: int
    store_max_bytes: int
    store_max_age: float


class Spool:
    """Staging buffer + writer thread for one process; ``path`` None: nothing written to disk."""

    def __init__(
        self,
        path: str | None,
        scrubber: Scrubber,
        settings: SpoolSettings,
        *,
        origin: _store.Origin,
        console: Callable[[], EventExporter] | None = None,
    ) -> None:
        self.path = path
        self.scrubber = scrubber
        self.settings = settings
        self.origin = origin  # this app in the store: its service and routes
        self._console_factory = console
        self.on_written: list[Callable[[], None]] = []  # called (writer thread) after rows reach the disk
        self._reset()

    def _reset(self) -> None:
        if getattr(self, "_pid", None) not in (None, os.getpid()):
            _sqlite.abandon_inherited(self._connection)  # a forked child: the parent's, not ours
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._staged: collections.deque[tuple[ReadableSpan, int]] = collections.deque()
        self._staged_events = 0
        self._in_process = 0
        self._held: collections.deque[_store.Row] = collections.deque()  # rows the disk refused
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flush_requested = False
        self._connection: sqlite3.Connection | None = None
        self._degraded = False
        self._next_prune = 0.0
        self.console = self._console_factory() if self._console_factory is not None else None

    # -- request thread ---------------------------------------------------------------------

    def submit(self, span: ReadableSpan, events: int) -> None:
        """Stage a span carrying ``events`` security events (O(1), never blocks on I/O)."""
        if self._pid != os.getpid():
            self._reset()  # a forked child that skipped the at-fork hooks
        dropped = 0
        with self._cond:
            if self._stopping:
                stopped = True
            else:
                stopped = False
                self._staged.append((span, events))
                self._staged_events += events
                while self._staged_events > self.settings.max_queue_length and len(self._staged) > 1:
                    _, old = self._staged.popleft()
                    self._staged_events -= old
                    dropped += old
                if self._staged_events >= self.settings.batch_size:
                    self._cond.notify()
            start = not stopped and self._thread is None
        if stopped:
            _drop("after_shutdown", events)
            return
        _drop("queue_full", dropped)
        if start:
            self._start()

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="sqreen_otel.spool", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: finish() writes on its own thread
            with self._cond:
                self._thread = None

    # -- writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.settings.interval
                while not (self._stopping or self._flush_requested) and (
                    self._staged_events < self.settings.batch_size
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._flush_requested = False
                stopping = self._stopping
            self.write_staged()
            if stopping:
                # Past a shutdown that did not wait for us (a store locked elsewhere): nobody
                # else closes what we opened.
                self._drop_connection()
                return

    def write_staged(self) -> None:
        """Scrub, encode and write what is staged now (any thread; used by the writer and at exit)."""
        if self._pid != os.getpid():
            self._reset()  # a forked child: the parent's staged events and connection are not ours
        end_open_carriers(MAX_OPEN_CARRIER_S)
        with self._cond:
            batch = list(self._staged)
            self._staged.clear()
            self._in_process += self._staged_events
            count, self._staged_events = self._staged_events, 0
        try:
            self._write(self._rows(batch))
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill the writer
            report_internal_error("spool", exc)
            _drop("internal_error", count)  # never lost silently: flush() reports it
        try:
            self._maybe_prune()
        except Exception as exc:  # noqa: BLE001
            report_internal_error("spool prune", exc)
        finally:
            with self._cond:
                self._in_process -= count
                self._cond.notify_all()

    def _rows(self, batch: list[tuple[ReadableSpan, int]]) -> list[_store.Row]:
        rows: list[_store.Row] = []
        for span, count in batch:
            try:
                events = scrubbed_events([span], self.scrubber)
            except Exception as exc:  # noqa: BLE001 - one bad span never blocks the batch
                report_internal_error("scrub", exc)
                _drop("unencodable", count)
                continue
            if self.console is not None:
                self._to_console(events)
            if self.path is None:
                continue
            for index, event in enumerate(events):
                try:
                    rows.append(_store.event_row(event, index, self.origin.service))
                except (ValueError, TypeError, OverflowError):
                    _drop("unencodable", 1)
        return rows

    def _to_console(self, events: list[SecurityEvent]) -> None:
        assert self.console is not None
        try:
            self.console.export_events(events)
            stats.add("events_exported.console", len(events))
        except Exception as exc:  # noqa: BLE001
            report_internal_error("console exporter", exc)

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            assert self.path is not None
            connection = _store.connect(self.path)
            try:
                _store.register(connection, self.origin)  # before our first row: new cursors start before it
            except BaseException:
                _sqlite.close_quietly(connection)
                raise
            self._connection = connection
        return self._connection

    def _write(self, rows: list[_store.Row]) -> None:
        if self.path is None or not (rows or self._held):
            return
        held = list(self._held)
        try:
            _store.insert(self._db(), held + rows, self.origin.id)
        except (sqlite3.Error, OSError) as error:
            self._hold(rows, error)
            return
        self._held.clear()
        stats.add("events_stored", len(rows) + len(held))
        if self._degraded:
            self._degraded = False
            logger.warning(
                "sqreen_otel event store %s is writable again; %d held events written.", self.path, len(held)
            )
        for callback in self.on_written:
            callback()

    def _hold(self, rows: list[_store.Row], error: BaseException) -> None:
        """The disk refused the rows: keep them in memory, bounded, and say so (every minute)."""
        self._drop_connection()
        self._degraded = True
        self._held.extend(rows)
        dropped = 0
        while len(self._held) > self.settings.max_queue_length:
            self._held.popleft()
            dropped += 1
        _drop("store_unavailable", dropped)
        log_every(
            ("store_unavailable", self.path),
            60.0,
            logging.ERROR,
            "sqreen_otel cannot write the event store %s (%s): %d security events are held in memory "
            "(at most %d, oldest dropped) until it can be written.",
            self.path,
            type(error).__name__,
            len(self._held),
            self.settings.max_queue_length,
        )

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self.path is None or self._degraded or now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY_S
        self.prune()

    def prune(self) -> None:
        """Apply the store's size and age bounds (the drainers count what was never delivered)."""
        try:
            _store.prune(
                self._db(), self.settings.store_max_bytes, self.settings.store_max_age, self.origin.id
            )
        except (sqlite3.Error, OSError):
            self._drop_connection()

    def _drop_connection(self) -> None:
        """A connection in error (writer thread): closed, the next write opens a new one."""
        connection, self._connection = self._connection, None
        _sqlite.close_quietly(connection)

    # -- control ------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Rows waiting in memory for the disk."""
        return len(self._held)

    def flush(self, timeout: float) -> bool:
        """Write what is staged now; True if it all reached the disk (or the console) in time."""
        if self._pid != os.getpid():
            self._reset()  # a forked child that staged nothing yet
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._staged and not self._in_process:
                return not self._held
        self._start()
        with self._cond:
            if self._thread is None:
                pass  # cannot start a thread: write on this one below
            else:
                self._flush_requested = True
                self._cond.notify_all()
                while self._staged or self._in_process:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return not self._held
        self.write_staged()
        return not self._held

    def finish(self, deadline: float) -> None:
        """Shutdown: stop accepting, write what is staged, close (bounded by ``deadline``)."""
        if self._pid != os.getpid():
            self._reset()  # a forked child never touches the parent's connection
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        if thread is None or not thread.is_alive():
            self.write_staged()  # what arrived after the writer's last pass (or with no writer)
        stuck = thread is not None and thread.is_alive()
        with self._cond:
            # A writer stuck past the deadline (a store another process keeps locked) holds a
            # batch too: at exit it is lost with the process, so it is counted now.
            left = self._staged_events + len(self._held) + (self._in_process if stuck else 0)
            self._staged.clear()
            self._staged_events = 0
        _drop("shutdown_timeout", left)
        if thread is None or not thread.is_alive():
            self._drop_connection()


def _drop(reason: str, events: int) -> None:
    if not events:
        return
    stats.add(f"events_dropped.{reason}", events)
    log_every(
        ("drop", reason),
        60.0,
        logging.WARNING,
        "sqreen_otel dropped security events (%s); see sqreen_otel.stats().",
        reason,
    )
