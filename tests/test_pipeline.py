"""The export pipeline: batching, retries, the bound, and shutdown against a hung destination."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import sqreen_otel
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome, ExportStatus
from sqreen_otel._shipping.pipeline import Backoff, ExportPipeline, PipelineSettings

FAST = Backoff(initial=0.01, cap=0.05)


class ScriptedExporter(SpanExporter):
    """Answers each export with the next scripted outcome (then success); records deliveries."""

    def __init__(self, script: Sequence[ExportOutcome | str] = ()) -> None:
        self.script = list(script)
        self.delivered: list[str] = []
        self.attempts: list[float] = []
        self.release = threading.Event()
        self.shut_down = False

    def export_batch(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
        self.attempts.append(time.monotonic())
        step = self.script.pop(0) if self.script else SUCCESS
        if step == "hang":
            self.release.wait(30)
            return SUCCESS
        assert isinstance(step, ExportOutcome)
        if step.status is ExportStatus.SUCCESS:
            self.delivered.extend(span.name for span in spans)
        return step

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.export_batch(spans).result

    def shutdown(self) -> None:
        self.shut_down = True


RETRY = ExportOutcome(ExportStatus.RETRY, detail="test")


def spans(count: int, start: int = 0) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("t")
    result: list[ReadableSpan] = []
    for index in range(start, start + count):
        span = tracer.start_span(f"s{index}")
        span.end()
        assert isinstance(span, ReadableSpan)
        result.append(span)
    return result


def pipeline(
    exporter: ScriptedExporter,
    *,
    delay: float = 3600,
    batch: int = 100,
    queue: int = 1000,
    grace: float = 5.0,
) -> ExportPipeline:
    return ExportPipeline("test", lambda: exporter, PipelineSettings(delay, batch, queue, grace), FAST)


@pytest.fixture
def stopper() -> Iterator[list[ExportPipeline]]:
    started: list[ExportPipeline] = []
    yield started
    for item in started:
        item.shutdown(1.0)


def names(count: int, start: int = 0) -> list[str]:
    return [f"s{i}" for i in range(start, start + count)]


def test_a_full_batch_is_exported_without_waiting_for_the_heartbeat(stopper: list[ExportPipeline]) -> None:
    exporter = ScriptedExporter()
    stopper.append(line := pipeline(exporter, batch=5))
    for span in spans(5):
        line.submit(span, 1)
    deadline = time.monotonic() + 5
    while len(exporter.delivered) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.delivered == names(5)


def test_the_heartbeat_exports_what_is_queued(stopper: list[ExportPipeline]) -> None:
    exporter = ScriptedExporter()
    stopper.append(line := pipeline(exporter, delay=0.2))
    started = time.monotonic()
    line.submit(spans(1)[0], 1)
    while not exporter.delivered and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert exporter.delivered == ["s0"]
    assert time.monotonic() - started >= 0.15


def test_a_failed_batch_stays_queued_and_is_retried_in_order(stopper: list[ExportPipeline]) -> None:
    exporter = ScriptedExporter([RETRY, RETRY])
    stopper.append(line := pipeline(exporter))
    for span in spans(3):
        line.submit(span, 1)
    assert line.flush(5.0) is False  # the forced attempt failed: the destination is down
    deadline = time.monotonic() + 5
    while line.pending and time.monotonic() < deadline:
        line.flush(0.5)
    assert exporter.delivered == names(3)
    assert sqreen_otel.stats()["export_retries.test"] == 2
    assert "events_dropped.queue_full.test" not in sqreen_otel.stats()


def test_retry_after_is_honoured(stopper: list[ExportPipeline]) -> None:
    exporter = ScriptedExporter([ExportOutcome(ExportStatus.RETRY, retry_after=0.6, detail="HTTP 429")])
    stopper.append(line := pipeline(exporter, batch=1))
    line.submit(spans(1)[0], 1)
    deadline = time.monotonic() + 5
    while not exporter.delivered and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.delivered == ["s0"]
    first, second = exporter.attempts
    assert second - first >= 0.55


def test_a_permanent_rejection_drops_the_batch_and_counts_it(stopper: list[ExportPipeline]) -> None:
    exporter = ScriptedExporter([ExportOutcome(ExportStatus.PERMANENT, detail="HTTP 400")])
    stopper.append(line := pipeline(exporter))
    for span in spans(4):
        line.submit(span, 2)
    line.flush(5.0)
    assert exporter.delivered == []
    assert sqreen_otel.stats()["events_dropped.rejected.test"] == 8
    assert line.pending == 0


def test_the_queue_is_bounded_by_events_and_drops_the_oldest(stopper: list[ExportPipeline]) -> None:
    exporter = ScriptedExporter()
    stopper.append(line := pipeline(exporter, queue=10))
    for span in spans(15):
        line.submit(span, 2)  # 30 events into a 10-event queue
    assert line.pending == 10
    assert sqreen_otel.stats()["events_dropped.queue_full.test"] == 20
    assert line.flush(5.0)
    assert exporter.delivered == names(5, start=10)  # the newest five spans


def test_a_destination_down_for_a_while_loses_nothing_that_fitted(stopper: list[ExportPipeline]) -> None:
    # A compressed outage: 40 failed attempts with backoff while events keep arriving, then recovery.
    exporter = ScriptedExporter([RETRY] * 40)
    stopper.append(line := pipeline(exporter, delay=0.01, batch=10, queue=1000))
    sent = spans(200)
    for index, span in enumerate(sent):
        line.submit(span, 1)
        if index % 10 == 0:
            time.sleep(0.005)
    deadline = time.monotonic() + 20
    while line.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(exporter.delivered) == sorted(names(200))
    assert len(exporter.attempts) > 40
    assert not any(key.startswith("events_dropped") for key in sqreen_otel.stats())


def test_shutdown_returns_within_its_timeout_when_the_destination_hangs() -> None:
    exporter = ScriptedExporter(["hang"])
    line = pipeline(exporter, batch=1)
    line.submit(spans(1)[0], 3)
    while not exporter.attempts:
        time.sleep(0.01)
    line.submit(spans(1, start=1)[0], 2)
    started = time.monotonic()
    line.shutdown(0.5)
    assert time.monotonic() - started < 1.5
    assert sqreen_otel.stats()["events_dropped.shutdown_timeout.test"] == 5
    line.submit(spans(1, start=2)[0], 1)
    assert sqreen_otel.stats()["events_dropped.after_shutdown.test"] == 1
    exporter.release.set()


def test_shutdown_delivers_what_is_queued_and_closes_the_exporter() -> None:
    exporter = ScriptedExporter()
    line = pipeline(exporter)
    for span in spans(3):
        line.submit(span, 1)
    line.shutdown(5.0)
    assert exporter.delivered == names(3)
    assert exporter.shut_down


class ContextRecordingExporter(ScriptedExporter):
    """Notes whether instrumentations would see "suppressed" while we export."""

    def __init__(self) -> None:
        super().__init__()
        self.suppressed: list[object] = []

    def export_batch(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value

        self.suppressed.append(get_value(_SUPPRESS_INSTRUMENTATION_KEY))
        return super().export_batch(spans)


def test_our_own_exports_are_not_traced(stopper: list[ExportPipeline]) -> None:
    exporter = ContextRecordingExporter()
    stopper.append(line := pipeline(exporter))
    line.submit(spans(1)[0], 1)
    assert line.flush(5.0)
    assert exporter.suppressed == [True]


def test_a_retryable_failure_at_shutdown_is_retried_within_the_graceful_timeout() -> None:
    exporter = ScriptedExporter([RETRY, RETRY])  # e.g. another process holding the store's lock
    line = pipeline(exporter)
    for span in spans(3):
        line.submit(span, 1)
    line.shutdown(3.0)
    assert exporter.delivered == names(3)
    assert "events_dropped.shutdown_timeout.test" not in sqreen_otel.stats()


def test_shutdown_does_not_wait_out_a_retry_after_beyond_its_timeout() -> None:
    exporter = ScriptedExporter([ExportOutcome(ExportStatus.RETRY, retry_after=60, detail="HTTP 503")])
    line = pipeline(exporter)
    line.submit(spans(1)[0], 4)
    started = time.monotonic()
    line.shutdown(0.5)
    assert time.monotonic() - started < 1.5
    assert exporter.delivered == []
    assert sqreen_otel.stats()["events_dropped.shutdown_timeout.test"] == 4


@pytest.mark.internal_errors_expected
def test_an_exporter_that_raises_is_counted_logged_without_data_and_retried(
    stopper: list[ExportPipeline], sqreen_logs: pytest.LogCaptureFixture
) -> None:
    class Raising(ScriptedExporter):
        def export_batch(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
            if not self.attempts:
                self.attempts.append(time.monotonic())
                raise RuntimeError("secret-in-message hunter2")
            return super().export_batch(spans)

    exporter = Raising()
    item = pipeline(exporter)
    stopper.append(item)
    for span in spans(3):
        item.submit(span, 1)
    assert not item.flush(5.0)  # the first attempt blew up: nothing delivered yet
    assert item.flush(5.0)
    assert exporter.delivered == names(3)
    assert sqreen_otel.stats()["internal_errors"] == 1
    assert all("hunter2" not in record.getMessage() for record in sqreen_logs.records)
