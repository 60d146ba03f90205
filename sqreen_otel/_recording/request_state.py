"""Per-request state, found from anywhere the request's code runs, at the lowest cost.

A request that tracks nothing must cost next to nothing, so little happens per request:
when a local-root SERVER span starts, our processor sets it in a context variable of ours
(``_REQUEST``: found from child spans, ``contextvars.copy_context()`` and threads given that
context) and files it in ``_open`` with the WSGI environ the middleware left; both are undone
when the span ends. The ``RequestState`` (identified user, events, client IP) is only created
when the request's code first tracks an event or identifies a user. An explicit
OpenTelemetry ``ctx`` handed to ``from_context`` is resolved through ``_open`` (by the span in
``ctx``, else by its trace); states of recently ended requests stay findable for late events.

The WSGI middleware may run before the request span exists (Flask and Django start it inside
the app), or for a request whose trace is not sampled (no span is recorded at all), so it
leaves the environ in ``pending_environ`` for the processor, and for the carrier of an
unsampled request's events (``routing``).
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import Span, SpanKind

from sqreen_otel import _fork, _schema
from sqreen_otel._config import Config
from sqreen_otel._http.client_ip import PEER, ClientIP, Inputs, resolve_snapshot, snapshot
from sqreen_otel._log import log_once
from sqreen_otel._recording.live_event import LiveEvent, UserView, identity_attributes
from sqreen_otel._recording.validate import AttributeValue, Scalar
from sqreen_otel._scrubbing.scrubber import Scrubber
from sqreen_otel._sdk_bridge import set_attributes_while_ending
from sqreen_otel._stats import stats

_IDENTIFY_LOCK = threading.Lock()
_MAX_OPEN_REQUESTS = 100_000  # bounds the registry if an instrumentation never ends its spans


def _after_fork() -> None:
    global _IDENTIFY_LOCK  # noqa: PLW0603 - replaced in a forked child
    _IDENTIFY_LOCK = threading.Lock()
    _open.clear()  # the parent's requests
    _recently_ended.clear()


pending_environ: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "sqreen_otel.pending_environ", default=None
)
_REQUEST: contextvars.ContextVar[SdkSpan | None] = contextvars.ContextVar("sqreen_otel.request", default=None)


class _Open:
    """An open request span: the token that made it current, its environ, its state if any."""

    __slots__ = ("environ", "span", "state", "token")

    def __init__(self, span: SdkSpan, environ: Mapping[str, Any] | None) -> None:
        self.span = span
        self.environ = environ
        self.state: RequestState | None = None
        self.token = _REQUEST.set(span)


_open: dict[int, _Open] = {}  # span id -> open request
_recently_ended: collections.OrderedDict[int, RequestState] = collections.OrderedDict()  # span id ->
_RECENTLY_ENDED = 256
_fork.in_child(_after_fork)


def request_started(span: SdkSpan, environ: Mapping[str, Any] | None) -> None:
    """A request span started (processor ``on_start``): make it current, cheaply."""
    if len(_open) >= _MAX_OPEN_REQUESTS:
        _open.pop(next(iter(_open)))  # the oldest: a span that never ended
    _open[span.context.span_id] = _Open(span, environ)


def request_ending(span: ReadableSpan) -> RequestState | None:
    """The request span ends (processor ``_on_ending``, else ``on_end`` with its readable copy):
    undo ``request_started``; its state if any.

    Copies of the context keep the span (now ended): a late call finds the state through
    ``_recently_ended``."""
    entry = _open.pop(span.context.span_id, None) if span.context is not None else None
    if entry is None:
        return None
    if _REQUEST.get() is entry.span:
        try:
            _REQUEST.reset(entry.token)
        except ValueError:  # ended from another context than it started in
            _REQUEST.set(None)
    state = entry.state
    if state is not None:
        _recently_ended[entry.span.context.span_id] = state
        if len(_recently_ended) > _RECENTLY_ENDED:
            _recently_ended.popitem(last=False)
    return state


def bind_environ(environ: Mapping[str, Any]) -> bool:
    """The middleware runs inside an open request span (an outer OTel middleware): give it the
    environ. False if no request span is open in this context."""
    span = _REQUEST.get()
    entry = _open.get(span.context.span_id) if span is not None else None
    if entry is None or entry.span is not span:
        return False
    if entry.environ is None:
        entry.environ = environ
    return True


def current_environ() -> Mapping[str, Any] | None:
    """The WSGI environ of the request this context serves, if a middleware gave it."""
    span = _REQUEST.get()
    entry = _open.get(span.context.span_id) if span is not None else None
    if entry is not None and entry.environ is not None:
        return entry.environ
    return pending_environ.get()


def end_current_request(status: int) -> None:
    """End the current request's span if it is still open (a ``RequestBlocked`` crossed a
    framework that would have ended it in its response handling), with its response status."""
    span = _REQUEST.get()
    if span is not None and span.is_recording() and span.end_time is None:
        span.set_attribute("http.response.status_code", status)
        span.end()


def _state_of(entry: _Open) -> RequestState:
    state = entry.state
    if state is None:
        from sqreen_otel._config import current_config

        state = entry.state = RequestState(entry.span)
        if entry.environ is not None:
            state.bind_http(entry.environ, current_config())
    return state


def _ended_state(span: Span) -> RequestState | None:
    """The state of a request whose span has ended (a late call), if we can tell it."""
    span_id = span.get_span_context().span_id
    state = _recently_ended.get(span_id)
    if state is None and isinstance(span, SdkSpan) and span.kind is SpanKind.SERVER:
        parent = span.parent
        if parent is None or parent.is_remote:
            state = RequestState(span)  # a request that had no state: no user, its attributes
    return state


class RequestState:
    """What we know about one request: its span, its identified user, its events."""

    __slots__ = ("events", "http", "identified", "record", "span")

    def __init__(self, span: SdkSpan) -> None:
        self.span = span
        self.identified: dict[str, Scalar] | None = None
        self.events: list[LiveEvent] = []
        self.http: tuple[Mapping[str, Any], Inputs, Config] | None = None
        self.record: Any = None  # the RequestRecord facade, built on first use

    @property
    def ended(self) -> bool:
        return self.span.end_time is not None

    def open(self) -> None:
        """Make a state of ours (an unsampled request's carrier) the current request."""
        entry = _Open(self.span, None)
        entry.state = self
        _open[self.span.context.span_id] = entry

    def close(self) -> None:
        """Undo ``open``."""
        request_ending(self.span)

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
        self,
        identifiers: dict[str, Scalar],
        traits: Mapping[str, AttributeValue],
        view: UserView,
        scrubber: Scrubber,
    ) -> bool:
        """Associate the user with the request (first call wins); False if another user already was."""
        with _IDENTIFY_LOCK:  # rare, tiny critical section: one lock for all requests
            if self.identified is not None:
                return self.identified == identifiers
            self.identified = identifiers
        attributes = identity_attributes(identifiers, traits, view, scrubber)
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
        span: Span | None = _REQUEST.get()
        if span is None:  # set on another thread (ConcurrentMultiSpanProcessor): the current span
            current = trace.get_current_span()
            entry = _open.get(current.get_span_context().span_id)
            return _state_of(entry) if entry is not None and entry.span is current else None
        entry = _open.get(span.get_span_context().span_id)
        return _state_of(entry) if entry is not None and entry.span is span else _ended_state(span)
    span = trace.get_current_span(ctx)
    entry = _open.get(span.get_span_context().span_id)
    if entry is not None and entry.span is span:
        return _state_of(entry)
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None
    for candidate in list(_open.values()):  # a child span of a request in an explicit ctx
        if candidate.span.get_span_context().trace_id == span_context.trace_id:
            return _state_of(candidate)
    return _ended_state(span)
