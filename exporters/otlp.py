"""``otlp``: the official OTLP/HTTP exporter behind the scrubber (the scale-out path).

Configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, timeout,
compression, certificates), to an OpenTelemetry Collector and from there to any backend. It
reports only SUCCESS or FAILURE (after its own retries of 429/502/503/504), so our pipeline
keeps a failed batch and retries it: permanent and transient failures look alike here.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from sqreen_otel._scrubbing_exporter import ScrubbingSpanExporter

__all__ = ["OTLPSpanExporter", "ScrubbingOTLPSpanExporter"]


class ScrubbingOTLPSpanExporter(ScrubbingSpanExporter):
    """``OTEL_TRACES_EXPORTER=sqreen``: scrubbed OTLP/HTTP for a stock OpenTelemetry pipeline.

    Keyword arguments (from declarative configuration, for instance) go to ``OTLPSpanExporter``.
    """

    def __init__(self, **otlp_arguments: Any) -> None:
        super().__init__(OTLPSpanExporter(**otlp_arguments))
