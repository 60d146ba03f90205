"""The export pipeline of one destination: queue, worker thread, retries, accounting.

* ``submit`` runs on the thread that ended a span: an O(1) append under a lock held for a few
  instructions, never I/O. Scrubbing and encoding happen in the worker thread.
* Exports happen every ``heartbeat_delay`` seconds, earlier when ``batch_size`` events are
  queued, on ``flush()``, and at shutdown, in batches of at most ``batch_size`` events.
* The queue holds at most ``max_queue_length`` events. When a span would not fit, the
  **oldest** queued spans are dropped to make room (recent events are what a playbook acts
  on), each drop counted by reason.
* A batch whose export fails with a retryable error goes back to the head of the queue (within
  the bound) and is retried with exponential backoff and full jitter (``flush()`` may try
  sooner), or after the ``Retry-After`` the destination asked for (nothing tries sooner). A
  permanent rejection drops the batch, counted.
  So a destination that is down for a while and comes back loses nothing that fitted.
* ``shutdown(timeout)`` stops accepting, makes a last attempt within the timeout even if the
  destination hangs, counts what could not be delivered, and returns: the worker is a daemon
  thread, so the process never hangs at exit.
* After ``fork()`` the child starts with an empty queue, a new lock, thread and exporter (its
  own connections): what the parent queued is the parent's to send.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter

from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import log_every
from sqreen_otel._shipping.export_result import ExportOutcome, ExportStatus, export_outcome
from sqreen_otel._stats import stats

_MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True)
class PipelineSettings:
    heartbeat_delay: float
    batch_size: int
    max_queue_length: int
    graceful_timeout: float


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, initial * 2**attempt))."""

    initial: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), _MAX_RETRY_AFTER_S)
        return random.uniform(0.0, min(self.cap, self.initial * (2**attempt)))


def _weak_call(method: Callable[[], None]) -> Callable[[], None]:
    """A callable running ``method`` while its object is alive (for ``register_at_fork``)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


class ExportPipeline:
    """Queue + worker thread + retries for one exporter (``name`` labels its counters)."""

    def __init__(
        self,
        name: str,
        exporter_factory: Callable[[], SpanExporter],
        settings: PipelineSettings,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self._factory = exporter_factory
        self.settings = settings
        self._backoff = backoff or Backoff()
        self.exporter = exporter_factory()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_weak_call(self._after_fork))

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[ReadableSpan, int]] = collections.deque()
        self._queued = 0  # events in the queue
        self._in_flight = 0  # events being exported
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = False
        self._flush_requested = False
        self._deadline = 0.0  # of the last attempt, once stopping
        self._attempt = 0
        self._retry_at = 0.0  # our backoff: a flush may try earlier
        self._not_before = 0.0  # the destination's Retry-After: nothing tries earlier

    def _after_fork(self) -> None:
        self._reset()
        try:
            self.exporter = self._factory()
        except Exception as exc:  # noqa: BLE001 - keep the inherited exporter rather than crash the child
            report_internal_error(f"{self.name} exporter after fork", exc)

    def _count(self, what: str, events: int) -> None:
        if events:
            stats.add(f"{what}.{self.name}", events)

    def _drop(self, reason: str, events: int) -> None:
        if not events:
            return
        self._count(f"events_dropped.{reason}", events)
        log_every(
            ("drop", self.name, reason),
            60.0,
            logging.WARNING,
            "sqreen_otel %s exporter dropped security events (%s); see sqreen_otel.stats().",
            self.name,
            reason,
        )

    # -- request thread ---------------------------------------------------------------------

    def submit(self, span: ReadableSpan, events: int) -> None:
        """Queue a span carrying ``events`` security events (O(1), never blocks on I/O)."""
        limit = self.settings.max_queue_length
        dropped = 0
        with self._cond:
            if self._stopping:
                stopped = True
            else:
                stopped = False
                queue = self._queue
                while queue and self._queued + self._in_flight + events > limit:
                    _, old_events = queue.popleft()
                    self._queued -= old_events
                    dropped += old_events
                if self._queued + self._in_flight + events > limit:
                    dropped += events  # larger than the whole queue: nothing to make room with
                else:
                    queue.append((span, events))
                    self._queued += events
                    if self._queued >= self.settings.batch_size:
                        self._cond.notify()
            start = not stopped and self._thread is None
        if stopped:
            self._drop("after_shutdown", events)
            return
        self._drop("queue_full", dropped)
        if start:
            self._start()

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name=f"sqreen_otel.export.{self.name}", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: shutdown() exports on its own thread
            with self._cond:
                self._thread = None

    # -- worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_beat = time.monotonic() + self.settings.heartbeat_delay
        while True:
            with self._cond:
                force = self._wait_for_work(next_beat)
                if force is None:
                    break
            self._drain(force=force, deadline=None)
            next_beat = time.monotonic() + self.settings.heartbeat_delay
        self._drain(force=True, deadline=self._deadline)  # the last attempt, bounded by shutdown

    def _wait_for_work(self, next_beat: float) -> bool | None:
        """Under the lock: wait until there is something to export. True: a flush (ignore any
        backoff); False: a full batch or the heartbeat; None: stopping."""
        while True:
            if self._stopping:
                return None
            if self._flush_requested:
                self._flush_requested = False
                return True
            now = time.monotonic()
            if now >= self._retry_at:
                if self._queued >= self.settings.batch_size or (self._queued and now >= next_beat):
                    return False
                if now >= next_beat:
                    next_beat = now + self.settings.heartbeat_delay  # nothing queued at the beat
            if self._queued >= self.settings.batch_size:
                wake_at = self._retry_at  # a full batch waits only for the backoff
            elif self._queued:
                wake_at = max(self._retry_at, next_beat)
            else:
                wake_at = next_beat
            self._cond.wait(max(0.001, wake_at - now))

    def _take_batch(self) -> list[tuple[ReadableSpan, int]]:
        batch: list[tuple[ReadableSpan, int]] = []
        events = 0
        with self._cond:
            queue = self._queue
            while queue and (not batch or events + queue[0][1] <= self.settings.batch_size):
                item = queue.popleft()
                batch.append(item)
                events += item[1]
            self._queued -= events
            self._in_flight = events
        return batch

    def _put_back(self, batch: list[tuple[ReadableSpan, int]]) -> None:
        """A retryable failure: the batch goes back to the head, within the bound (oldest dropped)."""
        events = sum(count for _, count in batch)
        with self._cond:
            self._in_flight = 0
            room = self.settings.max_queue_length - self._queued
            dropped = 0
            while batch and events > room:
                _, old = batch.pop(0)
                events -= old
                dropped += old
            self._queue.extendleft(reversed(batch))
            self._queued += events
        self._drop("queue_full", dropped)

    def _export(self, spans: list[ReadableSpan]) -> ExportOutcome:
        try:
            with suppress_instrumentation():  # our own exports create no spans
                return export_outcome(self.exporter, spans)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the worker
            report_internal_error(f"{self.name} export", exc)
            return ExportOutcome(ExportStatus.RETRY, detail=type(exc).__name__)

    def _drain(self, *, force: bool, deadline: float | None) -> bool:
        """Export batches until the queue is empty (True), a retry is pending or time is up.

        With a ``deadline`` (the last attempt at shutdown) a retryable failure is retried after
        its backoff (or ``Retry-After``) as long as that fits before the deadline.
        """
        while True:
            now = time.monotonic()
            if deadline is not None and now < self._not_before <= deadline:
                time.sleep(self._not_before - now)  # shutting down: wait out the backoff if it fits
                now = time.monotonic()
            if (deadline is not None and now >= deadline) or now < self._not_before:
                return False
            if not force and now < self._retry_at:
                return False
            batch = self._take_batch()
            if not batch:
                return True
            outcome = self._export([span for span, _ in batch])
            events = sum(count for _, count in batch)
            if outcome.status is ExportStatus.SUCCESS:
                with self._cond:
                    self._in_flight = 0
                    self._attempt = 0
                    self._retry_at = self._not_before = 0.0
                    self._cond.notify_all()
                self._count("events_exported", events)
            elif outcome.status is ExportStatus.PERMANENT:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
                self._drop("rejected", events)
            else:
                self._put_back(batch)
                delay = self._backoff.delay(self._attempt, outcome.retry_after)
                with self._cond:
                    self._attempt += 1
                    self._retry_at = time.monotonic() + delay
                    if outcome.retry_after is not None:
                        self._not_before = self._retry_at
                    self._cond.notify_all()
                self._count("export_retries", 1)
                if deadline is not None:
                    with self._cond:
                        self._not_before = max(self._not_before, self._retry_at)
                log_every(
                    ("retry", self.name),
                    60.0,
                    logging.WARNING,
                    "sqreen_otel %s exporter failed (%s); retrying in %.1fs, events stay queued.",
                    self.name,
                    outcome.detail or "retryable error",
                    delay,
                )
                if deadline is None or self._not_before > deadline:
                    return False

    # -- control ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events queued or being exported."""
        with self._cond:
            return self._queued + self._in_flight

    def flush(self, timeout: float) -> bool:
        """Export what is queued now (ignoring our backoff, never a Retry-After); False if not all
        was delivered within ``timeout``."""
        deadline = time.monotonic() + timeout
        if self.pending == 0:
            return True
        self._start()
        with self._cond:
            if self._thread is None:
                return False
            self._flush_requested = True
            self._cond.notify_all()
            while self._queued + self._in_flight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
                if not self._flush_requested and self._retry_at > time.monotonic():
                    return False  # the forced attempt failed: the destination is down
        return True

    def stop(self) -> None:
        """Stop accepting spans and wake the worker (the first half of a shared shutdown)."""
        with self._cond:
            if not self._stopping:
                self._stopping = True
                self._deadline = time.monotonic() + self.settings.graceful_timeout
            self._cond.notify_all()

    def finish(self, deadline: float) -> None:
        """Shutdown: stop accepting, let the worker make a last attempt until ``deadline``, account.

        The exporting happens on the worker (a daemon thread) and this only waits for it until
        the deadline, so a destination that hangs cannot hang the caller (or the interpreter exit).
        """
        with self._cond:
            if self._stopped:
                return
            self._stopping = True
            self._deadline = deadline
            self._cond.notify_all()
            thread = self._thread
        if thread is None and self.pending:  # the worker never started: start one to drain
            with self._cond:
                self._stopping = False
            self._start()
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
                thread = self._thread
            if thread is None:
                # No thread can start (Python 3.12+ refuses new threads once atexit runs): the
                # last attempt happens here, bounded by the deadline and the exporter's timeouts.
                self._drain(force=True, deadline=deadline)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        finished = thread is None or not thread.is_alive()
        with self._cond:
            left = self._queued + self._in_flight
            self._queue.clear()
            self._queued = 0
            self._stopped = True
        self._drop("shutdown_timeout", left)
        if finished:
            try:
                self.exporter.shutdown()
            except Exception as exc:  # noqa: BLE001 - shutting down must not raise into the host
                report_internal_error(f"{self.name} exporter shutdown", exc)

    def shutdown(self, timeout: float | None = None) -> None:
        self.finish(time.monotonic() + (self.settings.graceful_timeout if timeout is None else timeout))
