"""A small batching export worker: the seam the export pipeline plugs into.

Spans that carry security events are queued (bounded; the oldest is dropped and counted when
full) and exported from one daemon thread every ``heartbeat_delay`` seconds, on ``flush()``
and at shutdown. The request thread only appends to a deque. Our own HTTP calls are not
traced. After ``fork()`` the child starts with an empty queue and its own lock and thread, so
nothing queued in the parent is sent twice.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from opentelemetry import context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sqreen_otel._events import LiveEvent
from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import warn_once
from sqreen_otel._sdk_bridge import suppress_instrumentation_key
from sqreen_otel._stats import stats

_MAX_BATCH = 512


def _weak_call(method: Callable[[], None]) -> Callable[[], None]:
    """A callable that runs ``method`` while its object is alive (for ``register_at_fork``)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


def count_events(spans: Sequence[ReadableSpan]) -> int:
    return sum(1 for span in spans for event in span.events if isinstance(event, LiveEvent))


class ExportWorker:
    """Queue + thread that hands batches of spans to one ``SpanExporter``."""

    def __init__(self, exporter: SpanExporter, heartbeat_delay: float, max_queue_length: int) -> None:
        self.exporter = exporter
        self._delay = heartbeat_delay
        self._max_queue = max_queue_length
        self._init_runtime()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_weak_call(self._init_runtime))

    def configure(self, heartbeat_delay: float, max_queue_length: int) -> None:
        """New settings for the running worker (the current wait finishes first)."""
        self._delay = heartbeat_delay
        self._max_queue = max_queue_length

    def _init_runtime(self) -> None:
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()  # serialises exports (worker, flush, shutdown)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, span: ReadableSpan) -> None:
        """O(1) and never blocks: called on the thread that ended the span."""
        if self._stopped:
            stats.add("events_dropped_after_shutdown", count_events((span,)))
            return
        if len(self._queue) >= self._max_queue:
            try:
                oldest = self._queue.popleft()
            except IndexError:
                oldest = None
            if oldest is not None:
                stats.add("events_dropped_queue_full", count_events((oldest,)))
                warn_once("queue_full", "Security event queue is full; dropping the oldest spans.")
        self._queue.append(span)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._run, name="sqreen_otel.export", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: shutdown() will export on its own thread
                return
            self._thread = thread

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            if not self._stopped:
                self._export_all()

    def _export_all(self, deadline: float | None = None) -> bool:
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            while self._queue:
                if deadline is not None and time.monotonic() > deadline:
                    return False
                batch: list[ReadableSpan] = []
                while self._queue and len(batch) < _MAX_BATCH:
                    batch.append(self._queue.popleft())
                self._export(batch)
            return True
        finally:
            self._lock.release()

    def _export(self, batch: list[ReadableSpan]) -> None:
        token = context.attach(context.set_value(suppress_instrumentation_key(), True))
        try:
            result = self.exporter.export(batch)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the worker
            report_internal_error("export", exc)
            result = SpanExportResult.FAILURE
        finally:
            context.detach(token)
        if result is SpanExportResult.SUCCESS:
            stats.add("events_exported", count_events(batch))
        else:
            stats.add("events_dropped_export_failed", count_events(batch))

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export everything queued now, within ``timeout_s``."""
        return self._export_all(time.monotonic() + timeout_s)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._export_all(deadline)
        left = count_events(list(self._queue))
        if left:
            stats.add("events_dropped_shutdown_timeout", left)
        self.exporter.shutdown()
