"""Zero-code client-IP resolution: put ``SqreenMiddleware`` around Flask and Django.

Registered as ``opentelemetry_instrumentor`` entry points, so ``opentelemetry-instrument``
applies them like any instrumentation (and ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` can turn
them off: ``sqreen_flask``, ``sqreen_django``). Each wraps the framework's WSGI entry point
(``Flask.__call__``, Django's ``WSGIHandler.__call__``) in ``SqreenMiddleware``, the same code
as the manual recipe; a framework that is not installed is skipped quietly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from sqreen_otel.wsgi import SqreenMiddleware

_ORIGINAL = "_sqreen_otel_original_call"


def _wrap_call(cls: type) -> None:
    original: Callable[..., Iterable[bytes]] = cls.__call__
    if getattr(original, _ORIGINAL, None) is not None:
        return  # already wrapped

    @functools.wraps(original)
    def __call__(self: Any, environ: Any, start_response: Any) -> Iterable[bytes]:
        return SqreenMiddleware(functools.partial(original, self))(environ, start_response)

    setattr(__call__, _ORIGINAL, original)
    cls.__call__ = __call__  # type: ignore[method-assign]


def _unwrap_call(cls: type) -> None:
    original = getattr(cls.__call__, _ORIGINAL, None)
    if original is not None:
        cls.__call__ = original  # type: ignore[method-assign]


class SqreenFlaskInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``SqreenMiddleware`` around every Flask app's WSGI entry point."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("flask >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        try:
            import flask
        except ImportError:
            return
        _wrap_call(flask.Flask)

    def _uninstrument(self, **kwargs: Any) -> None:
        try:
            import flask
        except ImportError:
            return
        _unwrap_call(flask.Flask)


class SqreenDjangoInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``SqreenMiddleware`` around Django's WSGI handler."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("django >= 3.2",)

    def _instrument(self, **kwargs: Any) -> None:
        try:
            from django.core.handlers.wsgi import WSGIHandler
        except ImportError:
            return
        _wrap_call(WSGIHandler)

    def _uninstrument(self, **kwargs: Any) -> None:
        try:
            from django.core.handlers.wsgi import WSGIHandler
        except ImportError:
            return
        _unwrap_call(WSGIHandler)
