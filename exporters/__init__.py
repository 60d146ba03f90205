"""Exporters of the sqreen-otel pipeline, installed as ``sqreen_otel.exporters``.

The repository keeps them in the top-level ``exporters/`` folder; the build backend maps it
to ``sqreen_otel.exporters`` (pyproject ``[tool.setuptools] package-dir``) so the project never
claims the generic top-level import name ``exporters`` (an unrelated PyPI package has it),
while staying one distribution with one version and one test suite.

``SQREEN_EXPORTER`` names: ``local`` (the SQLite store, the default), ``otlp`` (OTLP/HTTP log
records to a Collector), ``http`` (Sqreen signal JSON to ``SQREEN_INGESTION_URL``),
``console``. ``local`` is the store itself; ``otlp`` and ``http`` are *remote*: they drain the
store (their durable queue); ``console`` prints events as they are written.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable

from sqreen_otel._config import Config
from sqreen_otel._log import log_once
from sqreen_otel._shipping.event_model import EventExporter
from sqreen_otel.exporters.console import ConsoleEventExporter
from sqreen_otel.exporters.http import SqreenHttpExporter
from sqreen_otel.exporters.local import LocalStoreExporter

__all__ = [
    "REMOTE",
    "ConsoleEventExporter",
    "LocalStoreExporter",
    "SqreenHttpExporter",
    "remote_exporter_factories",
]

REMOTE = ("otlp", "http")


def _otlp(endpoint: str | None, service: str | None) -> EventExporter:
    from sqreen_otel.exporters.otlp import OTLPEventExporter

    return OTLPEventExporter(endpoint, service=service)


def remote_exporter_factories(
    config: Config, service: str | None
) -> list[tuple[str, Callable[[], EventExporter]]]:
    """(name, factory) per configured remote exporter; a factory builds a fresh one (after fork
    too). Raises ``ValueError`` for a destination that cannot be used (a bad URL)."""
    factories: dict[str, Callable[[], EventExporter]] = {
        "otlp": lambda: _otlp(config.otlp_endpoint, service),
        "http": lambda: SqreenHttpExporter(config.ingestion_url or "", config.token, config.app_name),
    }
    wanted = [name for name in config.exporter if name in factories]
    if "otlp" in wanted and not _installed("opentelemetry.exporter.otlp.proto.http"):
        # An extra since OTLP exporters pin the sdk exactly: not there, the rest still works.
        log_once(("not installed", "otlp"), logging.ERROR, "%s", OTLP_MISSING)
        wanted.remove("otlp")
    return [(name, factories[name]) for name in wanted]


OTLP_MISSING = (
    "SQREEN_EXPORTER names otlp, but the OTLP exporter is not installed "
    "(pip install 'sqreen-otel[otlp]'): the otlp exporter is off"
)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False
