"""Default event properties (Sqreen's request context) from a span's HTTP attributes.

Works with whatever ``OTEL_SEMCONV_STABILITY_OPT_IN`` mode produced the attributes: the old
conventions (``http.method``, ``http.target``, ``net.peer.ip``...), the stable ones
(``http.request.method``, ``url.path``, ``url.query``, ``client.address``...), or both.
Stable keys win when both are present.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

_CLIENT_IP = ("client.address", "http.client_ip", "net.peer.ip", "network.peer.address")
_USER_AGENT = ("user_agent.original", "http.user_agent")
_METHOD = ("http.request.method_original", "http.request.method", "http.method")
_URL = ("url.full", "http.url")
_ROUTE = ("http.route",)
MAX_QUERY_CHARS = 8192
MAX_PARAMETERS = 64

#: Every span attribute the request context is derived from (copied onto late-event carriers).
REQUEST_CONTEXT_KEYS = frozenset(
    (
        *_CLIENT_IP,
        *_USER_AGENT,
        *_METHOD,
        *_URL,
        *_ROUTE,
        "url.path",
        "url.query",
        "http.target",
        "url.scheme",
    )
)


class RequestContext(NamedTuple):
    client_ip: str | None
    user_agent: str | None
    method: str | None
    path: str | None
    route: str | None
    parameters: dict[str, list[str]]


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value and value != "_OTHER":
            return value
    return None


def _path_and_query(attributes: Mapping[str, Any]) -> tuple[str | None, str | None]:
    path = attributes.get("url.path")
    query = attributes.get("url.query")
    if isinstance(path, str):
        return path, query if isinstance(query, str) else None
    target = attributes.get("http.target")
    if isinstance(target, str) and target:
        path, _, query = target.partition("?")
        return path, query
    url = _first(attributes, _URL)
    if url is not None:
        parts = urllib.parse.urlsplit(url)
        return parts.path or "/", parts.query
    return None, query if isinstance(query, str) else None


def parse_parameters(query: str | None) -> dict[str, list[str]]:
    """Query parameters as lists of values (bounded; hostile input never raises).

    As ``urllib.parse.parse_qsl(keep_blank_values=True)`` does, but decoding only the parts
    that hold something to decode (most hold nothing: a fraction of its cost).
    """
    if not query:
        return {}
    parameters: dict[str, list[str]] = {}
    count = 0
    for pair in query[:MAX_QUERY_CHARS].split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = urllib.parse.unquote_plus(name)
        if "%" in value or "+" in value:
            value = urllib.parse.unquote_plus(value)
        parameters.setdefault(name, []).append(value)
        count += 1
        if count >= MAX_PARAMETERS:
            break
    return parameters


class RequestFields(NamedTuple):
    """The raw fields of a request context, the query not yet parsed (the scrubber's input)."""

    client_ip: str | None
    user_agent: str | None
    method: str | None
    path: str | None
    route: str | None
    query: str | None


def request_fields(attributes: Mapping[str, Any]) -> RequestFields:
    """The request fields of a span, from its HTTP semantic-convention attributes."""
    path, query = _path_and_query(attributes)
    return RequestFields(
        client_ip=_first(attributes, _CLIENT_IP),
        user_agent=_first(attributes, _USER_AGENT),
        method=_first(attributes, _METHOD),
        path=path,
        route=_first(attributes, _ROUTE),
        query=query,
    )


def request_context(attributes: Mapping[str, Any]) -> RequestContext:
    """The request context of a span (unscrubbed), from its HTTP semantic-convention attributes."""
    client_ip, user_agent, method, path, route, query = request_fields(attributes)
    return RequestContext(client_ip, user_agent, method, path, route, parse_parameters(query))
