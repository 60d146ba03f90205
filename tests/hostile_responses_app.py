"""A Flask app for tests/test_responses_hostile.py: a health check, a catch-all API route (as
SPA fallbacks, proxies and file views have) and a login that identifies its user."""

from __future__ import annotations

import flask
from _flask_instrumented import instrument
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import sqreen_otel

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


instrument(app)
