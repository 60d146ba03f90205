"""What an export attempt tells the pipeline: delivered, retry later, or rejected for good.

``SpanExporter.export`` only says SUCCESS or FAILURE. Our exporters also implement
``export_batch(spans) -> ExportOutcome`` so the pipeline can honour ``Retry-After`` and tell
a destination that is briefly down (retry, keep the batch) from one that refuses the data
(permanent: drop it, counted). A plain ``SpanExporter``'s FAILURE is treated as retryable.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class ExportStatus(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class ExportOutcome:
    status: ExportStatus
    retry_after: float | None = None  # seconds the destination asked us to wait
    detail: str = ""  # for logs: a status code or an exception type, never data

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
