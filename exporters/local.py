"""``local``: the embedded default, the SQLite event store on this host (``store``).

In the pipeline the spool writes the store directly (it is also the remote exporters' durable
queue). ``LocalStoreExporter`` writes scrubbed events to a store of your choice, for direct use.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from sqreen_otel import _sqlite
from sqreen_otel._shipping import store as _store
from sqreen_otel._shipping.event_model import EventExporter, SecurityEvent
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome, ExportStatus

__all__ = ["LocalStoreExporter"]


class LocalStoreExporter(EventExporter):
    """Writes security events to the SQLite store at ``path`` (``service``: their ``service.name``)."""

    def __init__(self, path: str, service: str | None = None) -> None:
        self.path = path
        self.service = service
        self._origin = _store.origin_for(service, {})
        self._lock = threading.Lock()
        self._connection = _sqlite.ProcessConnection()

    def _db(self) -> sqlite3.Connection:
        return self._connection.get(lambda: _store.connect(self.path))[0]

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        rows = []
        ranks: dict[tuple[str, str], int] = {}
        for event in events:
            rank = ranks[event.trace_id, event.span_id] = ranks.get((event.trace_id, event.span_id), -1) + 1
            try:
                rows.append(_store.event_row(event, rank, self.service))
            except (ValueError, TypeError, OverflowError):
                continue  # one event that cannot be stored never blocks the others
        if not rows:
            return SUCCESS
        with self._lock:
            try:
                _store.insert(self._db(), rows, self._origin.id)
            except sqlite3.Error as exc:  # locked, disk full, read-only: keep the batch and retry
                self._connection.close()  # suspect: the next batch opens a new one
                return ExportOutcome(ExportStatus.RETRY, detail=f"sqlite: {type(exc).__name__}")
        return SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._connection.close()
