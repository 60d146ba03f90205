"""What an export attempt tells the pipeline: delivered, retry later, or rejected.

``SpanExporter.export`` only says SUCCESS or FAILURE. Our exporters also report an
``ExportOutcome`` so the pipeline can honour ``Retry-After`` and tell apart:

* ``RETRY``: the destination is briefly down (408, 429, 5xx, a timeout): keep the batch, retry;
* ``REFUSED``: the destination refuses *us* (401, 403, a redirect, 404): keep the events,
  back off, and say so: the fix is in the configuration, not in the data;
* ``PERMANENT``: the destination refuses *this data* (400, 413, 422): the batch is split to
  find the events at fault, which are dropped alone and counted (``too_large`` for 413).

A plain ``SpanExporter``'s FAILURE is treated as retryable.

At shutdown the caller's deadline reaches our exporters through ``export_deadline``: a
request made then never outlives it (``time_left``), even on the exiting thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class ExportStatus(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    REFUSED = "refused"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class ExportOutcome:
    status: ExportStatus
    retry_after: float | None = None  # seconds the destination asked us to wait
    detail: str = ""  # for logs: a status code or an exception type, never data
    too_large: bool = False  # a PERMANENT refusal because of the batch's size (413)

    @property
    def result(self) -> SpanExportResult:
        return SpanExportResult.SUCCESS if self.status is ExportStatus.SUCCESS else SpanExportResult.FAILURE


SUCCESS = ExportOutcome(ExportStatus.SUCCESS)


def export_outcome(exporter: SpanExporter, spans: Sequence[ReadableSpan]) -> ExportOutcome:
    """Export through ``export_batch`` when the exporter has it, else through ``export``."""
    export_batch = getattr(exporter, "export_batch", None)
    if export_batch is not None:
        outcome = export_batch(spans)
        if isinstance(outcome, ExportOutcome):
            return outcome
    if exporter.export(spans) is SpanExportResult.SUCCESS:
        return SUCCESS
    return ExportOutcome(ExportStatus.RETRY, detail="exporter returned FAILURE")


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sqreen_otel_export_deadline", default=None
)


@contextlib.contextmanager
def export_deadline(deadline: float | None) -> Iterator[None]:
    """Exports made in this block end by ``deadline`` (``time.monotonic()``; None: no bound)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(limit: float) -> float:
    """Seconds an export may take now: ``limit``, or less when a deadline is in force."""
    deadline = _deadline.get()
    if deadline is None:
        return limit
    return max(0.0, min(limit, deadline - time.monotonic()))
