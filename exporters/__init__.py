"""Exporters of the sqreen-otel pipeline, installed as ``sqreen_otel.exporters``.

The repository keeps them in the top-level ``exporters/`` folder; the build backend maps it
to ``sqreen_otel.exporters`` (pyproject ``[tool.setuptools] package-dir``) so the project never
claims the generic top-level import name ``exporters``.
"""

from __future__ import annotations

from opentelemetry.sdk.trace.export import SpanExporter
from sqreen_otel.exporters.console import ConsoleEventExporter

__all__ = ["ConsoleEventExporter", "build_exporter"]


def build_exporter(name: str) -> SpanExporter | None:
    """The exporter for a ``SQREEN_EXPORTER`` name (already validated); None for ``none``."""
    if name == "console":
        return ConsoleEventExporter()
    if name == "none":
        return None
    raise ValueError(f"unknown exporter {name!r}")
