"""A Flask app for end-to-end tests under gunicorn, set up the documented way at import.

``SQREEN_*`` settings come from the test's environment (local store, trusted proxies...).
``/login?id=N&user=U`` tracks a login failure for U, tagged with the request id N.
"""

from __future__ import annotations

import os
from typing import Any

import flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware

provider = TracerProvider()
trace.set_tracer_provider(provider)
sqreen_otel.configure()

app = flask.Flask("sqreen_e2e")


@app.route("/login", methods=["GET", "POST"])
def login() -> flask.Response:
    user = flask.request.args.get("user", "ann")
    sqreen_otel.from_context().for_user({"username": user}).track_auth_failure()
    sqreen_otel.track("request.tagged", properties={"id": flask.request.args.get("id", "")})
    return flask.Response("ok", headers={"X-Worker": str(os.getpid())})


instrumentor: Any = FlaskInstrumentor()  # untyped upstream
instrumentor.instrument_app(app)
app.wsgi_app = SqreenMiddleware(app.wsgi_app)  # type: ignore[method-assign]
