"""A small Flask shop, instrumented the ordinary OpenTelemetry way, tracking security events.

Run it on its own with ``python examples/flask_app.py`` (port 8000), or through the demo:
``make demo`` serves it on 127.0.0.1 and sends it realistic traffic.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from typing import Any

import flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware


def setup_tracing(app_exporter: SpanExporter | None = None, **sqreen_settings: Any) -> TracerProvider:
    """The app's usual OpenTelemetry set-up, plus one call to sqreen_otel.configure()."""
    provider = TracerProvider(resource=Resource.create({"service.name": "demo-shop"}))
    # The app's own trace pipeline (in production: an OTLP exporter to a Collector).
    provider.add_span_processor(BatchSpanProcessor(app_exporter or ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    # After the provider, before instrumenting: installs sqreen-otel's processor and sampler.
    sqreen_otel.configure(**sqreen_settings)
    return provider


class Users:
    """An in-memory user store (salted password hashes), enough for the demo."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, tuple[bytes, bytes]] = {}

    def add(self, email: str, password: str) -> bool:
        salt = os.urandom(16)
        with self._lock:
            if email in self._users:
                return False
            self._users[email] = (salt, hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000))
            return True

    def check(self, email: str, password: str) -> bool:
        with self._lock:
            record = self._users.get(email)
        if record is None:
            return False
        salt, digest = record
        return hmac.compare_digest(digest, hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000))


def create_app() -> flask.Flask:
    app = flask.Flask("demo_shop")
    users = Users()

    @app.post("/signup")
    def signup() -> tuple[str, int]:
        email = flask.request.form.get("email", "")
        if not users.add(email, flask.request.form.get("password", "")):
            return "exists", 409
        sqreen_otel.signup_track(email=email)  # records users.signup and identifies the user
        return "welcome", 201

    @app.post("/login")
    def login() -> tuple[str, int]:
        # request.values: form fields or (as careless clients do) the query string
        email = flask.request.values.get("email", "")
        if users.check(email, flask.request.values.get("password", "")):
            sqreen_otel.auth_track(True, email=email)
            return "ok", 200
        # The Go-SDK shape works too:
        sqreen_otel.from_context().for_user({"email": email}).track_auth_failure()
        return "invalid credentials", 401

    @app.post("/purchase")
    def purchase() -> tuple[str, int]:
        order: dict[str, Any] = flask.request.get_json(force=True)
        sqreen_otel.identify({"email": order.get("email", "")})
        sqreen_otel.from_context().track_event("payment.purchase").with_properties(
            {
                "item": order.get("item"),
                "amount": order.get("amount"),
                "currency": "EUR",
                "note": order.get("note"),
            }
        )
        return "paid", 200

    @app.post("/password-reset")
    def password_reset() -> tuple[str, int]:
        sqreen_otel.track("password.reset.requested", properties={"method": "email"})
        return "sent", 202

    instrumentor: Any = FlaskInstrumentor()  # untyped upstream
    instrumentor.instrument_app(app)
    app.wsgi_app = SqreenMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


if __name__ == "__main__":
    setup_tracing()
    create_app().run(host="127.0.0.1", port=8000)
