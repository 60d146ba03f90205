"""Per-request state, found from anywhere the request's code runs, at the lowest cost.

Our span processor creates a ``RequestState`` when a local-root SERVER span starts and sets it
in a context variable of ours (``_REQUEST``), so it is found from any child span, from
``contextvars.copy_context()`` and from threads given that context; the processor resets it
when the span ends. An explicit OpenTelemetry ``ctx`` handed to ``from_context`` is resolved
through a registry of open request spans (by the span in ``ctx``, else by its trace).
A plain context variable costs a fraction of attaching an OpenTelemetry context.

The WSGI middleware may run before the request span exists (Flask and Django start it inside
the app), or for a request whose trace is not sampled (no span is recorded at all), so it
leaves the environ in ``pending_environ`` for the processor, and for the carrier of an
unsampled request's events (``_placement``).
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import Span as SdkSpan

from sqreen_otel import _fork, _schema
from sqreen_otel._client_ip import PEER, ClientIP, Inputs, resolve_snapshot, snapshot
from sqreen_otel._config import Config
from sqreen_otel._events import LiveEvent, UserView, identity_attributes
from sqreen_otel._log import log_once
from sqreen_otel._normalize import AttributeValue, Scalar
from sqreen_otel._sdk_bridge import set_attributes_while_ending
from sqreen_otel._stats import stats

_IDENTIFY_LOCK = threading.Lock()
_MAX_OPEN_REQUESTS = 100_000  # bounds the registry if an instrumentation never ends its spans


def _after_fork() -> None:
    global _IDENTIFY_LOCK  # noqa: PLW0603 - replaced in a forked child
    _IDENTIFY_LOCK = threading.Lock()
    for registry in (_by_span, _by_trace, _recently_ended):
        registry.clear()  # the parent's requests


pending_environ: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "sqreen_otel.pending_environ", default=None
)
_REQUEST: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "sqreen_otel.request", default=None
)
# Request spans, for an explicit ``ctx``: open ones by span id and by trace id (the latest
# request), and the last ended ones by span id (a worker thread given the request's context
# after the response still finds its user: a late event).
_by_span: dict[int, RequestState] = {}
_by_trace: dict[int, RequestState] = {}
_recently_ended: collections.OrderedDict[int, RequestState] = collections.OrderedDict()
_RECENTLY_ENDED = 256
_fork.in_child(_after_fork)


class RequestState:
    """What we know about one request: its span, its identified user, its events."""

    __slots__ = ("_token", "events", "http", "identified", "record", "span")

    def __init__(self, span: SdkSpan) -> None:
        self.span = span
        self.identified: dict[str, Scalar] | None = None
        self.events: list[LiveEvent] = []
        self.http: tuple[Mapping[str, Any], Inputs, Config] | None = None
        self.record: Any = None  # the RequestRecord facade, built on first use
        self._token: contextvars.Token[RequestState | None] | None = None

    @property
    def ended(self) -> bool:
        return self.span.end_time is not None

    def open(self) -> None:
        """Make the state current (this context and its copies) and findable from a ``ctx``."""
        self._token = _REQUEST.set(self)
        context_ = self.span.get_span_context()
        if len(_by_span) >= _MAX_OPEN_REQUESTS:
            _by_span.pop(next(iter(_by_span)))  # the oldest: a span that never ended
        _by_span[context_.span_id] = self
        _by_trace[context_.trace_id] = self

    def close(self) -> None:
        """Undo ``open`` (at span end); copies of the context keep the (now ended) state."""
        context_ = self.span.get_span_context()
        if _by_span.pop(context_.span_id, None) is self:
            _recently_ended[context_.span_id] = self
            if len(_recently_ended) > _RECENTLY_ENDED:
                _recently_ended.popitem(last=False)
        if _by_trace.get(context_.trace_id) is self:
            del _by_trace[context_.trace_id]
        token, self._token = self._token, None
        if token is not None and _REQUEST.get() is self:
            try:
                _REQUEST.reset(token)
            except ValueError:  # ended from another context than it started in
                _REQUEST.set(None)

    def bind_http(self, environ: Mapping[str, Any], config: Config) -> None:
        """Remember the request's environ; its client IP is resolved only if it is needed.

        The inputs resolution reads are copied now (a few dict lookups), immune to later rewrites
        of the environ by the app (werkzeug's ProxyFix replacing REMOTE_ADDR).
        """
        if self.http is None:
            self.http = (environ, snapshot(environ, config.ip_header), config)

    def client(self) -> ClientIP | None:
        """The request's resolved client IP (cached on the inputs), or None without an environ."""
        if self.http is None:
            return None
        _, inputs, config = self.http
        return resolve_snapshot(inputs, config.client_ip_policy)

    def finish_http(self) -> None:
        """At span end, for a request that carries events: ``client.address`` (resolved),
        ``network.peer.address`` (the peer), ``sqreen.client_ip.source`` / ``.candidates``.

        Written once, after the instrumentation is done with the span (Flask and Django re-set
        their start attributes after the span started, which would overwrite an earlier write).
        """
        client = self.client()
        if client is None:
            return
        attributes = client_attributes(client)
        if client.candidates:
            assert self.http is not None
            _ambiguous(self.http[2])
        if attributes:
            set_attributes_while_ending(self.span, attributes)

    def identify(
        self, identifiers: dict[str, Scalar], traits: Mapping[str, AttributeValue], view: UserView
    ) -> bool:
        """Associate the user with the request (first call wins); False if another user already was."""
        with _IDENTIFY_LOCK:  # rare, tiny critical section: one lock for all requests
            if self.identified is not None:
                return self.identified == identifiers
            self.identified = identifiers
        attributes = identity_attributes(identifiers, traits, view)
        if attributes and not self.ended:
            self.span.set_attributes(attributes)
        return True


def client_attributes(client: ClientIP) -> dict[str, str | tuple[str, ...]]:
    """The span attributes of a resolved client IP."""
    attributes: dict[str, str | tuple[str, ...]] = {}
    if client.address is not None:
        attributes[_schema.CLIENT_ADDRESS] = client.address
    if client.peer is not None:
        attributes[_schema.NETWORK_PEER_ADDRESS] = client.peer
    if client.source != PEER:
        attributes[_schema.CLIENT_IP_SOURCE] = client.source
    if client.candidates:
        attributes[_schema.CLIENT_IP_CANDIDATES] = client.candidates
    return attributes


def environ_attributes(environ: Mapping[str, Any], config: Config) -> dict[str, AttributeValue]:
    """A request's fields, from its WSGI environ, as the span attributes a request span would
    carry (stable conventions): for the carrier of a request that no span recorded."""
    client = resolve_snapshot(snapshot(environ, config.ip_header), config.client_ip_policy)
    attributes: dict[str, AttributeValue] = {**client_attributes(client)}
    for key, name in _ENVIRON_FIELDS:
        value = environ.get(name)
        if isinstance(value, str) and value:
            attributes[key] = value[:_MAX_ENVIRON_VALUE]
    path = environ.get("PATH_INFO")
    if isinstance(path, str):
        script = environ.get("SCRIPT_NAME")
        attributes["url.path"] = ((script if isinstance(script, str) else "") + path)[
            :_MAX_ENVIRON_VALUE
        ] or "/"
    return attributes


_ENVIRON_FIELDS = (
    ("http.request.method", "REQUEST_METHOD"),
    ("url.query", "QUERY_STRING"),
    ("user_agent.original", "HTTP_USER_AGENT"),
    ("url.scheme", "wsgi.url_scheme"),
    ("server.address", "HTTP_HOST"),
)
_MAX_ENVIRON_VALUE = 8192


def _ambiguous(config: Config) -> None:
    stats.add("client_ip_ambiguous")
    log_once(
        "client_ip_ambiguous",
        logging.WARNING,
        "A request from a trusted proxy carried forwarding headers that name different clients; "
        "its client IP is the proxy's. Set SQREEN_IP_HEADER to the header your proxy writes%s.",
        "" if config.ip_header is None else " (it is set: this should not happen)",
    )


def current_state(ctx: context.Context | None = None) -> RequestState | None:
    """The request of the current context, or of the span in ``ctx`` (an OpenTelemetry context)."""
    if ctx is None:
        return _REQUEST.get()
    span_context = trace.get_current_span(ctx).get_span_context()
    return (
        _by_span.get(span_context.span_id)
        or _recently_ended.get(span_context.span_id)
        or _by_trace.get(span_context.trace_id)
    )
