"""WSGI integration: ``SqreenMiddleware`` resolves the client IP of each request.

Compose it with OpenTelemetry's instrumentation, in any order::

    app = OpenTelemetryMiddleware(SqreenMiddleware(app))                # plain WSGI
    app.wsgi_app = SqreenMiddleware(app.wsgi_app)                       # Flask + FlaskInstrumentor
    application = SqreenMiddleware(get_wsgi_application())              # Django + DjangoInstrumentor

With Flask and Django the request span starts *inside* the app, after this middleware ran,
so the middleware leaves the environ for the span processor, which binds it when the span
starts. The middleware returns the app's response iterable untouched (its ``close()`` is the
server's to call), re-raises the app's exceptions unchanged, and does nothing when nested in
itself or when ``SQREEN_DISABLE`` is set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqreen_otel._config import current_config
from sqreen_otel._guard import report_internal_error
from sqreen_otel._recording.request_state import bind_environ, pending_environ
from sqreen_otel._recording.routing import UNSAMPLED_STATE, end_unsampled_request

if TYPE_CHECKING:
    from contextvars import Token
    from typing import Any

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SqreenMiddleware"]

_APPLIED = "sqreen_otel.wsgi"


class SqreenMiddleware:
    """Resolve the client IP for the request span; see the module docstring."""

    __slots__ = ("app",)

    def __init__(self, app: WSGIApplication) -> None:
        self.app: WSGIApplication = app.app if isinstance(app, SqreenMiddleware) else app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        token = self._enter(environ)
        if token is None:
            return self.app(environ, start_response)
        try:
            return self.app(environ, start_response)
        finally:
            pending_environ.reset(token)
            if UNSAMPLED_STATE in environ:  # the request's events needed a carrier of ours
                self._exit(environ)

    @staticmethod
    def _exit(environ: WSGIEnvironment) -> None:
        try:
            end_unsampled_request(environ)
        except Exception as exc:  # noqa: BLE001 - never break the request for our sake
            report_internal_error("SqreenMiddleware", exc)

    @staticmethod
    def _enter(environ: WSGIEnvironment) -> Token[Any] | None:
        try:
            if environ.get(_APPLIED):
                return None
            config = current_config()
            if config.disable:
                return None
            environ[_APPLIED] = True
            if bind_environ(environ):  # the request span is open (an outer OTel middleware)
                return None
            # The span starts inside the app (Flask, Django), or no span records this request
            # (an unsampled trace): the processor, or the request's first event, takes it from here.
            return pending_environ.set(environ)
        except Exception as exc:  # noqa: BLE001 - never break the request for our sake
            report_internal_error("SqreenMiddleware", exc)
            return None
