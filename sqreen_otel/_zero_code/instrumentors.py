"""Zero-code client-IP resolution: put ``SqreenMiddleware`` around Flask and Django.

Registered as ``opentelemetry_instrumentor`` entry points, so ``opentelemetry-instrument``
applies them like any instrumentation (and ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` can turn
them off: ``sqreen_flask``, ``sqreen_django``). Each wraps the framework's WSGI entry point
(``Flask.__call__``, Django's ``WSGIHandler.__call__``) in ``SqreenMiddleware``, the same code
as the manual recipe; a framework that is not installed is skipped quietly.
"""

from __future__ import annotations

import functools
import importlib
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


class _WsgiEntryInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps one framework's WSGI entry class in ``SqreenMiddleware`` (absent framework: no-op)."""

    _requirement: str
    _module: str
    _class: str

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self._requirement,)

    def _entry_class(self) -> type | None:
        try:
            module = importlib.import_module(self._module)
        except ImportError:
            return None
        entry: type = getattr(module, self._class)
        return entry

    def _instrument(self, **kwargs: Any) -> None:
        entry = self._entry_class()
        if entry is not None:
            _wrap_call(entry)

    def _uninstrument(self, **kwargs: Any) -> None:
        entry = self._entry_class()
        if entry is not None:
            _unwrap_call(entry)


class SqreenFlaskInstrumentor(_WsgiEntryInstrumentor):
    """``SqreenMiddleware`` around every Flask app's WSGI entry point."""

    _requirement, _module, _class = "flask >= 2.0", "flask", "Flask"


class SqreenDjangoInstrumentor(_WsgiEntryInstrumentor):
    """``SqreenMiddleware`` around Django's WSGI handler, and ``RequestBlockedMiddleware`` last
    in ``settings.MIDDLEWARE`` (a blocked user is answered inside Django)."""

    _requirement, _module, _class = "django >= 3.2", "django.core.handlers.wsgi", "WSGIHandler"

    def _instrument(self, **kwargs: Any) -> None:
        super()._instrument(**kwargs)
        _add_django_middleware()


def _add_django_middleware() -> None:
    """Append ours to ``settings.MIDDLEWARE`` if settings exist (as OpenTelemetry's does)."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return
    from sqreen_otel.django import MIDDLEWARE_PATH

    try:
        middleware = getattr(settings, "MIDDLEWARE", None)
    except ImproperlyConfigured:
        return  # no settings yet: the recipe in sqreen_otel.django applies
    if middleware is None or MIDDLEWARE_PATH in middleware:
        return
    settings.MIDDLEWARE = [*middleware, MIDDLEWARE_PATH]
