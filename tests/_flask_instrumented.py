"""The test apps' OpenTelemetry and sqreen layers on a Flask app: the Flask instrumentation
where this OpenTelemetry release has one, else (upstream has none for 0.66b2) the WSGI one, as
such apps do; ``SqreenMiddleware`` either way."""

from __future__ import annotations

import importlib.util
from typing import Any

import flask

from sqreen_otel.wsgi import SqreenMiddleware


def instrument(app: flask.Flask) -> None:
    if importlib.util.find_spec("opentelemetry.instrumentation.flask") is not None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        instrumentor: Any = FlaskInstrumentor()  # untyped upstream
        instrumentor.instrument_app(app)
        app.wsgi_app = SqreenMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    else:
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        app.wsgi_app = SqreenMiddleware(OpenTelemetryMiddleware(app.wsgi_app))  # type: ignore[method-assign]
