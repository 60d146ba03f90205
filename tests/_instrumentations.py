"""The frameworks' OpenTelemetry instrumentations are optional (``sqreen-otel[flask]``,
``[django]``), and upstream may have none for the newest release (there is no Flask
instrumentation 0.66b2). Tests that need one skip, naming it, where it is not installed, except
for the instrumentations that ``SQREEN_OTEL_TEST_INSTRUMENTATIONS`` (comma-separated) says the
run must have: those tests run, and fail if it is missing. ``make unit`` and the compatibility
runner set it to what they installed, so nothing they expect to test is ever skipped silently.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

MODULES = {"flask": "opentelemetry.instrumentation.flask", "django": "opentelemetry.instrumentation.django"}
REQUIRED = {name.strip() for name in os.environ.get("SQREEN_OTEL_TEST_INSTRUMENTATIONS", "").split(",")}


def installed(framework: str) -> bool:
    return importlib.util.find_spec(MODULES[framework]) is not None


def needs(framework: str) -> pytest.MarkDecorator:
    """Skip unless ``framework``'s instrumentation is installed (or this run requires it)."""
    return pytest.mark.skipif(
        framework not in REQUIRED and not installed(framework),
        reason=f"opentelemetry-instrumentation-{framework} is not installed (sqreen-otel[{framework}])",
    )


def available(frameworks: list[str]) -> list[str]:
    """The frameworks among ``frameworks`` whose instrumentation this run has (or requires)."""
    return [name for name in frameworks if name in REQUIRED or installed(name)]
