"""Per-request state, kept in the OpenTelemetry context next to the request span.

Our span processor creates a ``RequestState`` when a local-root SERVER span starts and
attaches it to the current OpenTelemetry context, so it is found from any child span, from
``contextvars.copy_context()`` and from an explicit ``ctx`` handed to ``from_context``. The
span processor detaches it when the span ends, when that is safe (same context, nothing
attached on top); otherwise the instrumentation's own outer detach removes it.

The WSGI middleware may run before the request span exists (Flask and Django start it inside
the app), so it leaves the environ in ``pending_environ`` for the processor to pick up.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context
from opentelemetry.sdk.trace import Span as SdkSpan

from sqreen_otel import _schema
from sqreen_otel._client_ip import PEER, Inputs, resolve_snapshot, snapshot
from sqreen_otel._config import Config
from sqreen_otel._events import LiveEvent, UserView, identity_attributes
from sqreen_otel._log import log_once
from sqreen_otel._normalize import AttributeValue, Scalar
from sqreen_otel._sdk_bridge import set_attributes_while_ending
from sqreen_otel._stats import stats

_STATE_KEY = context.create_key("sqreen_otel.request")
_IDENTIFY_LOCK = threading.Lock()

pending_environ: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "sqreen_otel.pending_environ", default=None
)


class RequestState:
    """What we know about one request: its span, its identified user, its events."""

    __slots__ = ("_attached", "_token", "events", "http_inputs", "identified", "record", "span")

    def __init__(self, span: SdkSpan) -> None:
        self.span = span
        self.identified: dict[str, Scalar] | None = None
        self.events: list[LiveEvent] = []
        self.http_inputs: tuple[Inputs, Config] | None = None
        self.record: Any = None  # the RequestRecord facade, built on first use
        self._token: object = None
        self._attached: context.Context | None = None

    @property
    def ended(self) -> bool:
        return self.span.end_time is not None

    def attach(self) -> None:
        """Make the state current, alongside the span it belongs to."""
        ctx = context.set_value(_STATE_KEY, self)
        self._token = context.attach(ctx)
        self._attached = ctx

    def detach(self) -> None:
        """Undo ``attach`` only if nothing was attached on top of us in this context."""
        token, self._token = self._token, None
        if token is not None and context.get_current() is self._attached:
            context.detach(token)  # type: ignore[arg-type]
        self._attached = None

    def bind_http(self, environ: Mapping[str, Any], config: Config) -> None:
        """Remember the request's client-IP inputs; resolved once, when the span ends."""
        if self.http_inputs is None:
            self.http_inputs = (snapshot(environ, config.ip_header), config)

    def finish_http(self) -> None:
        """At span end: ``client.address`` (resolved), ``network.peer.address`` (the peer).

        Written once, after the instrumentation is done with the span (Flask and Django re-set
        their start attributes after the span started, which would overwrite an earlier write).
        """
        if self.http_inputs is None:
            return
        inputs, config = self.http_inputs
        client = resolve_snapshot(inputs, config.client_ip_policy)
        attributes: dict[str, str | tuple[str, ...]] = {}
        if client.address is not None:
            attributes[_schema.CLIENT_ADDRESS] = client.address
        if client.peer is not None:
            attributes[_schema.NETWORK_PEER_ADDRESS] = client.peer
        if client.source != PEER:
            attributes[_schema.CLIENT_IP_SOURCE] = client.source
        if client.candidates:
            attributes[_schema.CLIENT_IP_CANDIDATES] = client.candidates
            _ambiguous(config)
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
    state = context.get_value(_STATE_KEY, ctx)
    return state if isinstance(state, RequestState) else None
