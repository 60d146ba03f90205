"""The same small app under each supported instrumentation, wrapped the documented way.

Views track a login failure, a custom event with properties, a signup (which identifies),
and an event on an INTERNAL child span; ``/boom`` tracks then raises; ``/identify?user=U``
identifies U (a blocked user stops there), then tracks ``after.identify``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from _instrumentations import available
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import get_current_span

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


#: The events every view records, in order, on the request span.
EVENT_NAMES = ["users.login.failure", "report.exported", "sq.identify", "users.signup", "rendered"]


def track_request(tracer_provider: TracerProvider) -> None:
    """What every view does (the instrumentations differ, the calls do not)."""
    sqreen_otel.auth_track(False, username="ann")
    record = sqreen_otel.from_context()
    record.track_event("report.exported").with_properties({"format": "csv", "rows": 12})
    sqreen_otel.signup_track(uid="u-1", email="ann@example.com")
    with tracer_provider.get_tracer("views").start_as_current_span("render"):
        sqreen_otel.track("rendered")


def identify_then_track(user: str) -> None:
    """What ``/identify`` does: a user block raises at identify, so nothing after it runs."""
    sqreen_otel.identify({"email": user})
    sqreen_otel.track("after.identify")


def plain_wsgi(tracer_provider: TracerProvider, sqreen_outside: bool) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/boom":
            sqreen_otel.track("before.boom")
            raise ValueError("boom")
        if environ["PATH_INFO"] == "/identify":
            identify_then_track(environ["QUERY_STRING"].partition("=")[2])
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        track_request(tracer_provider)
        assert get_current_span().is_recording()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    if sqreen_outside:
        return SqreenMiddleware(OpenTelemetryMiddleware(app, tracer_provider=tracer_provider))
    return OpenTelemetryMiddleware(SqreenMiddleware(app), tracer_provider=tracer_provider)


def flask_app(tracer_provider: TracerProvider) -> Any:
    import flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = flask.Flask("sqreen_test")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str:
        track_request(tracer_provider)
        return "ok"

    @app.route("/boom")
    def boom() -> str:
        sqreen_otel.track("before.boom")
        raise ValueError("boom")

    @app.route("/identify")
    def identify() -> str:
        identify_then_track(flask.request.args.get("user", ""))
        return "ok"

    instrumentor: Any = FlaskInstrumentor()  # untyped upstream
    instrumentor.instrument_app(app, tracer_provider=tracer_provider)
    app.wsgi_app = SqreenMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def django_app(tracer_provider: TracerProvider) -> WSGIApplication:
    """Django, configured in-process (once per process: Django settings are global)."""
    import django
    from django.conf import settings
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ROOT_URLCONF="framework_apps",
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=["sqreen_otel.django.RequestBlockedMiddleware"],  # the documented recipe
        INSTALLED_APPS=[],
        LOGGING_CONFIG=None,
    )
    DjangoInstrumentor().instrument(tracer_provider=tracer_provider)
    django.setup()
    from django.core.wsgi import get_wsgi_application

    global _DJANGO_PROVIDER
    _DJANGO_PROVIDER = tracer_provider
    return SqreenMiddleware(get_wsgi_application())


_DJANGO_PROVIDER: TracerProvider | None = None


def instrumented_apps(tracer_provider: TracerProvider) -> dict[str, WSGIApplication]:
    """The Flask and Django apps, for each instrumentation this run has (``_instrumentations``)."""
    builders: dict[str, Callable[[], WSGIApplication]] = {
        "flask": lambda: flask_app(tracer_provider).wsgi_app,
        "django": lambda: django_app(tracer_provider),
    }
    return {name: builders[name]() for name in available(list(builders))}


def _django_login(request: Any) -> Any:
    from django.http import HttpResponse

    assert _DJANGO_PROVIDER is not None
    track_request(_DJANGO_PROVIDER)
    return HttpResponse("ok")


def _django_identify(request: Any) -> Any:
    from django.http import HttpResponse

    identify_then_track(request.GET.get("user", ""))
    return HttpResponse("ok")


def _django_boom(request: Any) -> Any:
    sqreen_otel.track("before.boom")
    raise ValueError("boom")


def __getattr__(name: str) -> Any:
    if name == "urlpatterns":  # resolved lazily: importing django.urls needs configured settings
        from django.urls import path

        return [path("login", _django_login), path("boom", _django_boom), path("identify", _django_identify)]
    raise AttributeError(name)
