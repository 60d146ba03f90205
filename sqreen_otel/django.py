"""Django integration: ``RequestBlockedMiddleware`` answers a blocked user inside Django.

``identify()`` raises ``RequestBlocked`` (a ``BaseException``) into the view. Django's own
exception handling only catches ``Exception``, so without this middleware the exception
crosses Django to ``SqreenMiddleware``, which answers but skips Django's response handling
(and OpenTelemetry's Django middleware never ends the request span normally). Put it last in
``MIDDLEWARE`` (closest to the view)::

    MIDDLEWARE = [..., "sqreen_otel.django.RequestBlockedMiddleware"]

``opentelemetry-instrument`` adds it by itself (the ``sqreen_django`` instrumentor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqreen_otel._responses.enforcement import RequestBlocked

__all__ = ["RequestBlockedMiddleware"]

MIDDLEWARE_PATH = "sqreen_otel.django.RequestBlockedMiddleware"


class RequestBlockedMiddleware:
    """Turns ``RequestBlocked`` into Django's response (see the module docstring)."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        try:
            return self.get_response(request)
        except RequestBlocked as blocked:
            return _django_response(blocked, request)


def _django_response(blocked: RequestBlocked, request: Any) -> Any:
    from django.http import HttpResponse

    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    body = b"".join(blocked.respond(request.META, start_response))
    response = HttpResponse(body, status=int(captured["status"].split(" ", 1)[0]))
    for name, value in captured["headers"]:
        if name.lower() != "content-length":
            response[name] = value
    return response
