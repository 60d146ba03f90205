"""A Flask app for tests/test_responses_hostile.py: a health check, a catch-all API route (as
SPA fallbacks, proxies and file views have) and a login that identifies its user."""

from __future__ import annotations

from typing import Any

import flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware

trace.set_tracer_provider(TracerProvider())
sqreen_otel.configure()

app = flask.Flask("sqreen_review_responses")


@app.route("/health")
def health() -> str:
    return "ok"


@app.route("/api/<path:sub>", methods=["GET", "POST"])
def api(sub: str) -> str:
    return "api view ran"


@app.route("/login", methods=["GET", "POST"])
def login() -> str:
    sqreen_otel.identify({"email": flask.request.args.get("user", "ann")})
    return "welcome"


instrumentor: Any = FlaskInstrumentor()
instrumentor.instrument_app(app)
app.wsgi_app = SqreenMiddleware(app.wsgi_app)  # type: ignore[method-assign]
