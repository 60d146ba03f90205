"""The zero-code instrumentors wrap Flask and Django in SqreenMiddleware, and unwrap them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask
import pytest
from _support import Otel
from django.core.handlers.wsgi import WSGIHandler
from opentelemetry.trace import SpanKind
from werkzeug.test import Client

import sqreen_otel
from sqreen_otel._zero_code.instrumentors import SqreenDjangoInstrumentor, SqreenFlaskInstrumentor


@pytest.fixture
def flask_instrumented() -> Iterator[None]:
    original = flask.Flask.__call__
    instrumentor: Any = SqreenFlaskInstrumentor()
    instrumentor.instrument()
    try:
        assert flask.Flask.__call__ is not original
        yield
    finally:
        instrumentor.uninstrument()
    assert flask.Flask.__call__ is original


def test_flask_apps_resolve_the_client_ip_with_no_code_change(otel: Otel, flask_instrumented: None) -> None:
    app = flask.Flask("zero")

    @app.route("/")
    def index() -> str:
        # As FlaskInstrumentor would: the request span starts inside the app.
        with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
            sqreen_otel.track("seen")
        return "ok"

    Client(app).get("/", headers={"X-Forwarded-For": "203.0.114.7"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    (span,) = otel.app_spans()
    assert dict(span.attributes or {})["client.address"] == "203.0.114.7"
    assert dict(span.attributes or {})["network.peer.address"] == "10.0.0.1"


def test_django_handler_is_wrapped_and_unwrapped() -> None:
    original = WSGIHandler.__call__
    instrumentor: Any = SqreenDjangoInstrumentor()
    instrumentor.instrument()
    try:
        assert WSGIHandler.__call__ is not original
        assert WSGIHandler.__call__._sqreen_otel_original_call is original  # type: ignore[attr-defined]
    finally:
        instrumentor.uninstrument()
    assert WSGIHandler.__call__ is original
