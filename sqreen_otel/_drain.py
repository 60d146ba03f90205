"""Delivery of the store's events to a remote exporter (http, otlp): the durable queue's consumer.

* Each process runs one drainer thread per remote exporter. On the heartbeat
  (``SQREEN_HEARTBEAT_DELAY``), earlier when a full batch is waiting, on ``flush()`` and at
  shutdown, it takes the lease of the exporter's cursor for this service (``_store``) and
  sends what follows the cursor in batches of ``batch_size``, advancing the cursor after each
  delivered batch. One process sends at a time; when one dies, its lease expires and another
  worker (or the restarted app) goes on from the cursor: what a dead process left is
  delivered, and a delivered batch is not sent again (a crash between a destination's answer
  and the cursor update can repeat that one batch; every event carries its unique
  ``event_key`` for the destination to de-duplicate).
* Failures: ``RETRY`` waits with exponential backoff and full jitter, or the destination's
  ``Retry-After`` (which binds every process: it is stored with the cursor); ``REFUSED``
  (authentication, a redirect) keeps the events and backs off at the cap, logging an error;
  ``PERMANENT`` splits the batch to find the events at fault, which are dropped alone and
  counted (``too_large``, ``rejected``); an event the exporter cannot encode is dropped alone
  (``unencodable``). One bad event never blocks the rest.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.instrumentation.utils import suppress_instrumentation

from sqreen_otel import _store
from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import log_every
from sqreen_otel._model import EventExporter, SecurityEvent
from sqreen_otel._outcome import ExportOutcome, ExportStatus
from sqreen_otel._pipeline import Backoff
from sqreen_otel._stats import stats

LEASE_S = 30.0
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError)
_UNENCODABLE = ExportOutcome(ExportStatus.PERMANENT, detail="unencodable")

Item = tuple[int, SecurityEvent]


@dataclass(frozen=True)
class DrainSettings:
    heartbeat_delay: float
    batch_size: int
    graceful_timeout: float


@dataclass
class _Result:
    """What one drain did: caught up with the store, and whether it dropped anything."""

    caught_up: bool = False
    dropped: bool = False


class Drainer:
    """One remote exporter's consumer of the store (see the module docstring)."""

    def __init__(
        self,
        name: str,
        exporter_factory: Callable[[], EventExporter],
        path: str,
        *,
        service: str | None,
        settings: DrainSettings,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.service = service
        self.settings = settings
        self._factory = exporter_factory
        self._backoff = backoff or Backoff()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self.exporter = self._factory()
        self._owner = _store.lease_owner()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None
        self._stopping = False
        self._force = False
        self._wanted = 0  # a drain was asked for (flush) and not yet done
        self._done = 0
        self._last: _Result = _Result()
        self._attempt = 0
        self._retry_at = 0.0  # our backoff: a flush may try earlier
        self._not_before = 0.0  # the destination's Retry-After: nothing tries earlier
        self._deadline: float | None = None

    # -- triggers ------------------------------------------------------------------------------

    def start(self, *, for_shutdown: bool = False) -> None:
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            if self._thread is not None or (self._stopping and not for_shutdown):
                return
            thread = threading.Thread(target=self._run, name=f"sqreen_otel.drain.{self.name}", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:
            with self._cond:
                self._thread = None

    def poke(self) -> None:
        """Rows were stored (the spool's callback): drain early if a full batch is waiting."""
        if self._pid != os.getpid():
            self._reset()
        self.start()
        with self._cond:
            self._cond.notify()

    # -- the drainer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_beat = time.monotonic() + self.settings.heartbeat_delay
        while True:
            with self._cond:
                while not self._stopping and self._wanted == self._done:
                    now = time.monotonic()
                    if now >= next_beat and now >= self._retry_at:
                        break
                    if self._full_batch_waiting() and now >= self._retry_at:
                        break
                    self._cond.wait(max(0.01, min(next_beat, max(self._retry_at, now + 0.5)) - now))
                stopping, wanted, force = self._stopping, self._wanted, self._force
                self._force = False
            result = self._drain(force=force or stopping, deadline=self._deadline if stopping else None)
            next_beat = time.monotonic() + self.settings.heartbeat_delay
            with self._cond:
                self._last = result
                self._done = wanted
                self._cond.notify_all()
            if stopping:
                if not result.caught_up:
                    self._left_in_store()
                self._close()
                return

    def _full_batch_waiting(self) -> bool:
        """Under the lock, cheap: is a full batch of ours waiting after the cursor?"""
        try:
            db = self._db()
            row = db.execute(
                "SELECT delivered_id FROM deliveries WHERE exporter = ? AND service = ?",
                (self.name, _store.service_key(self.service)),
            ).fetchone()
            return row is not None and _store.last_id(db, self.service) - row[0] >= self.settings.batch_size
        except sqlite3.Error:
            self._connection = None
            return False

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = _store.connect(self.path)
            _store.open_cursor(self._connection, self.name, self.service)
        return self._connection

    def _drain(self, *, force: bool, deadline: float | None) -> _Result:
        """Send what follows the cursor; ``force`` ignores our backoff, never a ``Retry-After``;
        with a ``deadline`` (shutdown) waits out retries that fit before it."""
        result = _Result()
        if not self._wait_until_allowed(force, deadline):
            return result
        try:
            db = self._db()
            cursor = _store.take_lease(db, self.name, self.service, self._owner, LEASE_S)
            if cursor is None:
                return result  # another process is draining, or waits out a Retry-After
            hold_until: float | None = None
            try:
                hold_until = self._drain_leased(db, cursor, deadline, result)
            finally:
                if hold_until is None:
                    _store.release_lease(db, self.name, self.service, self._owner)
                else:  # keep the lease through the retry delay: it binds every process
                    _store.hold_lease(db, self.name, self.service, self._owner, hold_until)
            return result
        except sqlite3.Error as error:
            self._connection = None
            log_every(
                ("drain_store", self.name),
                60.0,
                logging.ERROR,
                "sqreen_otel %s exporter cannot read the event store %s (%s); retrying.",
                self.name,
                self.path,
                type(error).__name__,
            )
            return result

    def _wait_until_allowed(self, force: bool, deadline: float | None) -> bool:
        now = time.monotonic()
        not_before = self._not_before if force else max(self._not_before, self._retry_at)
        if now >= not_before:
            return True
        if deadline is not None and not_before <= deadline:
            time.sleep(not_before - now)
            return True
        return False

    def _drain_leased(
        self, db: sqlite3.Connection, cursor: int, deadline: float | None, result: _Result
    ) -> float | None:
        """Batches until caught up (None) or a failure: then the epoch time to retry at."""
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            rows = _store.pending_rows(db, self.service, cursor, self.settings.batch_size)
            if not rows:
                result.caught_up = True
                self._attempt = 0
                self._retry_at = self._not_before = 0.0
                return None
            items: list[Item] = []
            for row_id, row in rows:
                try:
                    items.append((row_id, _store.event_from_row(row)))
                except _ENCODING_ERRORS:
                    self._drop("unencodable", 1, result)
            handled, failure = self._send(items, result) if items else (None, None)
            position = rows[-1][0] if failure is None else (handled or cursor)
            if position > cursor:
                _store.advance(db, self.name, self.service, self._owner, position)
                cursor = position
                _store.take_lease(db, self.name, self.service, self._owner, LEASE_S)  # renew
            if failure is not None:
                delay = self._schedule_retry(failure)
                if deadline is not None and time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    continue
                return time.time() + delay

    def _send(self, items: list[Item], result: _Result) -> tuple[int | None, ExportOutcome | None]:
        """Deliver ``items`` in order; (last id handled, the failure that stopped us or None)."""
        outcome = self._export([event for _, event in items])
        if outcome.status is ExportStatus.SUCCESS:
            stats.add(f"events_exported.{self.name}", len(items))
            return items[-1][0], None
        if outcome.status is not ExportStatus.PERMANENT:
            return None, outcome
        if len(items) == 1:
            reason = (
                "unencodable" if outcome is _UNENCODABLE else "too_large" if outcome.too_large else "rejected"
            )
            self._drop(reason, 1, result)
            return items[0][0], None
        half = len(items) // 2
        first, failure = self._send(items[:half], result)
        if failure is not None:
            return first, failure
        second, failure = self._send(items[half:], result)
        return second if second is not None else first, failure

    def _export(self, events: list[SecurityEvent]) -> ExportOutcome:
        try:
            with suppress_instrumentation():  # our own exports create no spans
                return self.exporter.export_events(events)
        except _ENCODING_ERRORS:
            return _UNENCODABLE
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the drainer
            report_internal_error(f"{self.name} export", exc)
            return ExportOutcome(ExportStatus.RETRY, detail=type(exc).__name__)

    def _drop(self, reason: str, events: int, result: _Result) -> None:
        result.dropped = True
        stats.add(f"events_dropped.{reason}.{self.name}", events)
        log_every(
            ("drop", self.name, reason),
            60.0,
            logging.WARNING,
            "sqreen_otel %s exporter dropped security events (%s); see sqreen_otel.stats().",
            self.name,
            reason,
        )

    def _schedule_retry(self, outcome: ExportOutcome) -> float:
        """Record when to retry after ``outcome``; the delay in seconds."""
        refused = outcome.status is ExportStatus.REFUSED
        attempt = 10 if refused else self._attempt  # refused: back off at the cap
        delay = self._backoff.delay(attempt, outcome.retry_after)
        self._attempt += 1
        self._retry_at = time.monotonic() + delay
        if outcome.retry_after is not None:
            self._not_before = self._retry_at
        stats.add(f"export_retries.{self.name}", 1)
        log_every(
            ("retry", self.name),
            60.0,
            logging.ERROR if refused else logging.WARNING,
            "sqreen_otel %s exporter %s (%s); retrying in %.1fs, events stay in the store.",
            self.name,
            "is refused by its destination: check its configuration" if refused else "failed",
            outcome.detail or "retryable error",
            delay,
        )
        return delay

    # -- control ------------------------------------------------------------------------------------

    def request_drain(self) -> int:
        """Ask the drainer thread to drain now, ignoring our backoff; a ticket for ``wait_drained``."""
        self.start()
        with self._cond:
            if self._thread is None or not self._thread.is_alive() or self._stopping:
                return -1  # shut down (or no thread could start): nothing will drain
            self._wanted += 1
            self._force = True
            self._cond.notify_all()
            return self._wanted

    def wait_drained(self, ticket: int, timeout: float) -> tuple[bool, bool]:
        """(caught up, dropped something) for the drain of ``ticket``, within ``timeout``."""
        deadline = time.monotonic() + timeout
        if ticket < 0:
            return False, False
        with self._cond:
            while self._done < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False, False
                self._cond.wait(remaining)
            return self._last.caught_up, self._last.dropped

    def flush(self, timeout: float) -> tuple[bool, bool]:
        """Drain now (ignoring our backoff); (caught up, dropped something) within ``timeout``."""
        return self.wait_drained(self.request_drain(), timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def finish(self, deadline: float) -> None:
        """Shutdown: a last drain until ``deadline`` on the drainer thread, then close."""
        with self._cond:
            self._stopping = True
            self._deadline = deadline
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self.start(for_shutdown=True)  # no thread yet: start one to make the last attempt
            with self._cond:
                thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # stuck on the destination: its events stay on disk
                self._left_in_store()

    def _left_in_store(self) -> None:
        """At shutdown, say what stays queued (on disk: the next process of the app delivers it)."""
        try:
            db = _store.connect(self.path)  # its own: the drainer thread may still hold ours
            try:
                _store.release_lease(db, self.name, self.service, self._owner)  # for the next process
                row = db.execute(
                    "SELECT delivered_id FROM deliveries WHERE exporter = ? AND service = ?",
                    (self.name, _store.service_key(self.service)),
                ).fetchone()
                left = _store.last_id(db, self.service) - (row[0] if row else 0)
            finally:
                db.close()
        except sqlite3.Error:
            return
        if left > 0:
            stats.add(f"events_left_in_store.{self.name}", left)
            log_every(
                ("left", self.name),
                60.0,
                logging.WARNING,
                "sqreen_otel %s exporter could not deliver every security event before shutting down; "
                "the rest stay queued in the event store %s for the next process of this app.",
                self.name,
                self.path,
            )

    def _close(self) -> None:
        try:
            self.exporter.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutting down must not raise into the host
            report_internal_error(f"{self.name} exporter shutdown", exc)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
