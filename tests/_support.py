"""Test helpers shared by the suite (importable as ``_support``: pytest adds tests/ to sys.path).

``Otel.app`` is the host's ordinary pipeline (a SimpleSpanProcessor: sampled spans only);
``Otel.ours`` is what sqreen_otel's processor exports (spans carrying security events).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import Tracer

import sqreen_otel

#: The ``open_store`` fixture (conftest): an event store opened for a test, closed at its end.
OpenStore = Callable[[str | os.PathLike[str]], sqlite3.Connection]


@dataclass
class Otel:
    provider: TracerProvider
    app: InMemorySpanExporter
    ours: InMemorySpanExporter

    @property
    def tracer(self) -> Tracer:
        return self.provider.get_tracer("tests")

    def app_spans(self) -> tuple[ReadableSpan, ...]:
        return self.app.get_finished_spans()

    def __enter__(self) -> Otel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.provider.shutdown()

    def exported(self) -> tuple[ReadableSpan, ...]:
        """What our pipeline exported, after a flush."""
        assert sqreen_otel.flush(5.0)
        return self.ours.get_finished_spans()


def make_otel(
    sampler: Sampler | None = None, span_limits: SpanLimits | None = None, **settings: object
) -> Otel:
    provider = TracerProvider(sampler=sampler, span_limits=span_limits, shutdown_on_exit=False)
    app = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(app))
    ours = InMemorySpanExporter()
    sqreen_otel.configure(tracer_provider=provider, exporter=ours, heartbeat_delay=3600, **settings)  # type: ignore[arg-type]
    return Otel(provider, app, ours)


def events_of(span: ReadableSpan) -> list[tuple[str, dict[str, object]]]:
    """(name, attributes) of each event; ours without their ``sqreen.event.id``, which is
    checked here (a random 128-bit id, present on every event we record)."""
    found: list[tuple[str, dict[str, object]]] = []
    for event in span.events:
        attributes: dict[str, object] = dict(event.attributes or {})
        if "sqreen.event.type" in attributes:
            event_id = attributes.pop("sqreen.event.id")
            assert isinstance(event_id, str) and re.fullmatch("[0-9a-f]{32}", event_id), event_id
        found.append((event.name, attributes))
    return found


def only(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [span for span in spans if span.name == name]
    assert len(matching) == 1, f"expected one span {name!r}, got {[s.name for s in spans]}"
    return matching[0]


def run_python(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, executable: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a Python program in a fresh process, from ``cwd`` (never the repository root, whose
    sources would shadow the installed package), without the caller's OTEL_*/SQREEN_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))}
    clean.update(env or {})
    command = [executable] if executable is not None else []
    return subprocess.run(
        [*command, sys.executable, *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class LogCapture:
    """An SDK ``LoggerProvider`` keeping what is emitted, across SDK releases (the in-memory
    exporter was renamed in 1.39, and the records it keeps changed type)."""

    def __init__(self) -> None:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs import export as logs_export

        renamed = getattr(logs_export, "InMemoryLogRecordExporter", None)
        exporter_class = renamed or logs_export.InMemoryLogExporter
        self.exporter = exporter_class()
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(logs_export.SimpleLogRecordProcessor(self.exporter))

    def records(self) -> list[Any]:
        """The API-level log records emitted so far (``event_name``, ``attributes``, ids...)."""
        return [getattr(item, "log_record", item) for item in self.exporter.get_finished_logs()]
