"""Exporters of the sqreen-otel pipeline, installed as ``sqreen_otel.exporters``.

The repository keeps them in the top-level ``exporters/`` folder; the build backend maps it
to ``sqreen_otel.exporters`` (pyproject ``[tool.setuptools] package-dir``) so the project never
claims the generic top-level import name ``exporters`` (an unrelated PyPI package has it),
while staying one distribution with one version and one test suite.

``SQREEN_EXPORTER`` names: ``local`` (SQLite store, the default), ``otlp`` (OTLP/HTTP to a
Collector), ``http`` (Sqreen signal JSON to ``SQREEN_INGESTION_URL``), ``console``.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.trace.export import SpanExporter

from sqreen_otel._config import Config
from sqreen_otel.exporters.console import ConsoleEventExporter
from sqreen_otel.exporters.http import SqreenHttpExporter
from sqreen_otel.exporters.local import LocalStoreExporter

__all__ = ["ConsoleEventExporter", "LocalStoreExporter", "SqreenHttpExporter", "exporter_factories"]


def _otlp() -> SpanExporter:
    from sqreen_otel.exporters.otlp import OTLPSpanExporter

    return OTLPSpanExporter()


def exporter_factories(config: Config) -> list[tuple[str, Callable[[], SpanExporter]]]:
    """(name, factory) per configured exporter; a factory builds a fresh exporter (after fork too)."""
    factories: dict[str, Callable[[], SpanExporter]] = {
        "local": lambda: LocalStoreExporter(config.local_store),
        "otlp": _otlp,
        "http": lambda: SqreenHttpExporter(config.ingestion_url or "", config.token, config.app_name),
        "console": ConsoleEventExporter,
    }
    return [(name, factories[name]) for name in config.exporter]
