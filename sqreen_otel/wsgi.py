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
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from sqreen_otel._config import current_config
from sqreen_otel._guard import report_internal_error
from sqreen_otel._recording.request_state import bind_environ, end_current_request, pending_environ
from sqreen_otel._recording.routing import UNSAMPLED_STATE, end_unsampled_request
from sqreen_otel._responses import enforcement
from sqreen_otel._responses.respond import ip_response as _ip_response

if TYPE_CHECKING:
    from contextvars import Token

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SqreenMiddleware"]

_APPLIED = "sqreen_otel.wsgi"


class SqreenMiddleware:
    """Resolve the client IP for the request span; see the module docstring."""

    __slots__ = ("app",)

    def __init__(self, app: WSGIApplication) -> None:
        self.app: WSGIApplication = app.app if isinstance(app, SqreenMiddleware) else app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        entered = self._enter(environ)
        if entered is None:
            return self.app(environ, start_response)
        token, ours = entered
        tracked: _TrackedStart | None = None
        outer_context = otel_context.get_current()
        try:
            index = enforcement.index_in_force() if ours else None
            if index is not None:  # nothing in force (the common case): one check, nothing more
                enforcement.serving(environ)
                blocked = _ip_response(environ)
                if blocked is not None:
                    return blocked.respond(environ, start_response)
                if index.has_user_actions:  # identify() may raise: know if a response began
                    tracked = _TrackedStart(start_response)
            return self.app(environ, tracked or start_response)
        except enforcement.RequestBlocked as blocked:
            if not ours:
                raise
            _end_request_span()
            if otel_context.get_current() is not outer_context:
                # An instrumentation inside us attached a context it never detached (the
                # exception crossed it): restore ours, or this thread's next request inherits it.
                otel_context.attach(outer_context)
            started = tracked is not None and tracked.called
            return blocked.respond(environ, start_response, started=started)
        finally:
            if token is not None:
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
    def _enter(environ: WSGIEnvironment) -> tuple[Token[Any] | None, bool] | None:
        """None when nested in itself or disabled; else (the pending-environ token if the span
        is not open yet, whether this middleware enforces: the outermost one does)."""
        try:
            if environ.get(_APPLIED):
                return None
            config = current_config()
            if config.disable:
                return None
            environ[_APPLIED] = True
            if bind_environ(environ):  # the request span is open (an outer OTel middleware)
                return None, True
            # The span starts inside the app (Flask, Django), or no span records this request
            # (an unsampled trace): the processor, or the request's first event, takes it from here.
            return pending_environ.set(environ), True
        except Exception as exc:  # noqa: BLE001 - never break the request for our sake
            report_internal_error("SqreenMiddleware", exc)
            return None


class _TrackedStart:
    """``start_response``, remembering whether the app called it (a block answered after it
    must pass the exception, as WSGI requires)."""

    __slots__ = ("called", "start_response")

    def __init__(self, start_response: StartResponse) -> None:
        self.start_response = start_response
        self.called = False

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.called = True
        return self.start_response(status, headers, exc_info)


def _end_request_span() -> None:
    """A ``RequestBlocked`` crossed the app: end its request span if the framework did not."""
    try:
        end_current_request(403)
    except Exception as exc:  # noqa: BLE001
        report_internal_error("SqreenMiddleware", exc)
