"""Delivery of the store's events to a remote exporter (http, otlp): the durable queue's consumer.

* Each process runs one drainer thread per remote exporter. On the heartbeat
  (``SQREEN_HEARTBEAT_DELAY``), earlier when a full batch is waiting, on ``flush()`` and at
  shutdown, it takes the lease of its route's cursor (``store``: this exporter, this app's
  service and destination) and sends what follows the cursor in batches of ``batch_size``,
  advancing the cursor after each delivered batch. One process sends at a time; when one
  dies, its lease expires and another worker (or the restarted app) goes on from the cursor:
  what a dead process left is delivered, and a delivered batch is not sent again (a crash
  between a destination's answer and the cursor update can repeat that one batch; every
  event carries its unique ``event_key`` for the destination to de-duplicate).
* The lease outlives any one request: it is renewed before each request for longer than the
  exporter's bound on a request (``EventExporter.max_export_seconds``), and a drainer that
  finds it lost stops at once, so two processes never send the same batch.
* Undelivered rows the store's bounds deleted (by any process) are counted here, for this
  exporter: ``events_dropped.store_bound.<exporter>``, and ``flush()`` returns False.
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

from sqreen_otel import _sqlite
from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import log_every, logger
from sqreen_otel._shipping import store as _store
from sqreen_otel._shipping.event_model import EventExporter, SecurityEvent
from sqreen_otel._shipping.export_result import ExportOutcome, ExportStatus, export_deadline
from sqreen_otel._shipping.pipeline import Backoff
from sqreen_otel._stats import stats

LEASE_MARGIN_S = 30.0  # a lease lasts the exporter's longest request plus this
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError, UnicodeError)
_UNENCODABLE = ExportOutcome(ExportStatus.PERMANENT, detail="unencodable")

Item = tuple[int, SecurityEvent]


@dataclass(frozen=True)
class DrainSettings:
    heartbeat_delay: float
    batch_size: int
    graceful_timeout: float
    #: Keep the lease between drains (renewed at each heartbeat) rather than release it: a
    #: consumer with state (the playbooks' counts) stays in one process while that one lives.
    keep_lease: bool = False

    @property
    def kept_lease_s(self) -> float:
        """How long a kept lease outlives its last renewal (a holder stopped but not dead)."""
        return max(5.0, 5 * self.heartbeat_delay)


@dataclass
class _Result:
    """What one drain did: caught up with the store, whether it dropped anything, and whether
    another process held the lease."""

    caught_up: bool = False
    dropped: bool = False
    busy: bool = False


class _LeaseLost(Exception):
    """Another process took our lease (we were too slow): stop sending at once."""


class Drainer:
    """One remote exporter's consumer of the store (see the module docstring)."""

    def __init__(
        self,
        name: str,
        exporter_factory: Callable[[], EventExporter],
        path: str,
        *,
        route: str,
        settings: DrainSettings,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.route = route
        self.settings = settings
        self._factory = exporter_factory
        self._backoff = backoff or Backoff()
        self._reset()

    def _reset(self) -> None:
        if getattr(self, "_pid", None) not in (None, os.getpid()):
            _sqlite.abandon_inherited(self._connection)  # a forked child: the parent's, not ours
        self._pid = os.getpid()
        self.exporter = self._factory()
        self._owner = _store.lease_owner()
        self._lease_s = float(self.exporter.max_export_seconds) + LEASE_MARGIN_S
        self._told_elsewhere = False
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
            if stopping:
                self._last_attempt(wanted)
                return
            result = self._drain(force=force, deadline=None)
            next_beat = time.monotonic() + self.settings.heartbeat_delay
            if result.busy:  # another process drains: look again later, not in a loop
                self._retry_at = max(
                    self._retry_at, time.monotonic() + min(1.0, self.settings.heartbeat_delay)
                )
            self._settle(result, wanted)

    def _settle(self, result: _Result, wanted: int) -> None:
        with self._cond:
            self._last = result
            self._done = wanted
            self._cond.notify_all()

    def _last_attempt(self, wanted: int) -> None:
        """Shutdown: one drain bounded by the deadline, say what stays on disk, close."""
        result = self._drain(force=True, deadline=self._deadline)
        self._settle(result, wanted)
        if not result.caught_up:
            self._left_in_store(release=True)
        self._close()

    def _full_batch_waiting(self) -> bool:
        """Under the lock, cheap: is a full batch of ours waiting after the cursor?"""
        try:
            size = self.settings.batch_size
            return _store.backlog(self._db(), self.route, at_most=size) >= size
        except sqlite3.Error:
            self._drop_connection()
            return False

    def _db(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            connection = self._connection = _store.connect(self.path)  # closed on error by the caller
            if not self._told_elsewhere:  # the first time in this process
                self._told_elsewhere = True
                self._report_waiting_elsewhere(connection)
        return connection

    def _drain(self, *, force: bool, deadline: float | None) -> _Result:
        """Send what follows the cursor; ``force`` ignores our backoff, never a ``Retry-After``;
        with a ``deadline`` (shutdown) waits out retries that fit before it."""
        result = _Result()
        if not self._wait_until_allowed(force, deadline):
            return result
        with export_deadline(deadline):  # our HTTP exporters' requests end by it
            return self._drain_allowed(deadline, result)

    def _drain_allowed(self, deadline: float | None, result: _Result) -> _Result:
        try:
            db = self._db()
            cursor = _store.take_lease(db, self.route, self._owner, self._lease_s)
            if cursor is None:
                result.busy = True  # another process is draining, or waits out a Retry-After
                return result
            self._count_store_drops(db, result)
            hold_until: float | None = None
            try:
                hold_until = self._drain_leased(db, cursor, deadline, result)
            except _LeaseLost:
                return result  # not ours any more: nothing to release
            self._count_store_drops(db, result)
            if hold_until is None and self.settings.keep_lease and deadline is None:
                _store.hold_lease(db, self.route, self._owner, time.time() + self.settings.kept_lease_s)
            elif hold_until is None:
                _store.release_lease(db, self.route, self._owner)
            else:  # keep the lease through the retry delay: it binds every process
                _store.hold_lease(db, self.route, self._owner, hold_until)
            return result
        except sqlite3.Error as error:
            self._drop_connection()
            delay = self._backoff.delay(min(self._attempt, 6), None) + 0.5  # never a busy loop
            self._attempt += 1
            self._retry_at = time.monotonic() + delay
            log_every(
                ("drain_store", self.name),
                60.0,
                logging.ERROR,
                "sqreen_otel %s exporter cannot use the event store %s (%s); retrying in %.1fs.",
                self.name,
                self.path,
                type(error).__name__,
                delay,
            )
            return result

    def _report_waiting_elsewhere(self, connection: sqlite3.Connection) -> None:
        elsewhere = _store.waiting_elsewhere(connection, self.route)
        if elsewhere:
            logger.warning(
                "sqreen_otel: %d security events of this service wait in the event store %s for another "
                "%s destination (another app, or this one before a change of URL or credentials); they "
                "are not sent to this one and stay readable with `sqreen-otel events`.",
                elsewhere,
                self.path,
                self.name,
            )

    def _count_store_drops(self, db: sqlite3.Connection, result: _Result) -> None:
        """Report the undelivered rows the store's bounds deleted (by any process, even while
        this app was down) that no drainer reported yet; we hold the lease."""
        dropped = _store.take_drop_report(db, self.route, self._owner)
        if dropped:
            self._drop("store_bound", dropped, result)

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
            rows = _store.pending_rows(db, self.route, cursor, self.settings.batch_size)
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
            handled, failure = self._send(db, cursor, items, result) if items else (None, None)
            position = rows[-1][0] if failure is None else (handled or cursor)
            if position > cursor:
                if not _store.advance(db, self.route, self._owner, position):
                    raise _LeaseLost
                cursor = position
            if failure is not None:
                delay = self._schedule_retry(failure)
                if deadline is not None and time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    continue
                return time.time() + delay

    def _send(
        self, db: sqlite3.Connection, cursor: int, items: list[Item], result: _Result
    ) -> tuple[int | None, ExportOutcome | None]:
        """Deliver ``items`` in order; (last id handled, the failure that stopped us or None)."""
        if _store.take_lease(db, self.route, self._owner, self._lease_s) != cursor:  # renew first
            raise _LeaseLost  # taken, or taken and given back after another delivered: start again
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
        first, failure = self._send(db, cursor, items[:half], result)
        if failure is not None:
            return first, failure
        second, failure = self._send(db, cursor, items[half:], result)
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
        if self._pid != os.getpid():
            self._reset()  # a forked child: never the parent's lock or thread
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def finish(self, deadline: float) -> None:
        """Shutdown: a last drain until ``deadline`` on the drainer thread, then close."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            self._stopping = True
            self._deadline = deadline
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self.start(for_shutdown=True)  # no thread yet: start one to make the last attempt
            with self._cond:
                thread = self._thread
            if thread is None:
                # No thread can start (Python 3.12+ refuses new threads once atexit runs): the
                # last attempt happens here, bounded by the deadline like the thread's would be.
                with self._cond:
                    wanted = self._wanted
                self._last_attempt(wanted)
                return
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # stuck on the destination: its events stay on disk
                self._left_in_store(release=False)

    def _left_in_store(self, *, release: bool) -> None:
        """At shutdown, say what stays queued (on disk: the next process of the app delivers it).

        ``release``: give the lease up for the next process, keeping a destination's
        ``Retry-After`` binding on it. A drainer stuck on its destination keeps it: the request
        may still be answered, and once this process is gone its lease is seen dead at once.
        Bounded by the shutdown deadline: a store locked by someone else is not waited for.
        """
        deadline = self._deadline if self._deadline is not None else time.monotonic() + 1.0
        wait = max(0.05, min(1.0, deadline - time.monotonic()))  # past the deadline: a glance only
        left: int | None = None  # unknown if the store is locked by someone else
        try:
            db = _store.connect(self.path, timeout=wait)  # its own: the drainer thread may hold ours
            try:
                if release:
                    not_before = None
                    if self._not_before > time.monotonic():
                        not_before = time.time() + (self._not_before - time.monotonic())
                    _store.release_lease(db, self.route, self._owner, not_before)
                left = _store.backlog(db, self.route)
            finally:
                db.close()
        except sqlite3.Error:
            pass
        if left is None or left > 0:
            if left:
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
        self._drop_connection()

    def _drop_connection(self) -> None:
        """Close ours (in error, or at shutdown); the next use opens a new one."""
        connection, self._connection = self._connection, None
        _sqlite.close_quietly(connection)
