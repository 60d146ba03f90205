"""Enforcement: which action applies to a request, and what happens then.

* IP actions run in ``SqreenMiddleware`` before the app, on the resolved client IP (and, for
  a request whose forwarding headers disagree in trusted-proxy mode, on each client they
  named: a forged header cannot hide a blocked client, only get its sender blocked).
* User actions run when the app identifies the user (``identify()``, ``for_user(...)
  .identify()``, ``auth_track(True, ...)``, ``signup_track(...)``): ``RequestBlocked`` is
  raised into the view, on the thread serving the request (never elsewhere: a background
  job is not a request to refuse), and the middleware turns it into the response.
* Passlists (``SQREEN_IP_PASSLIST``, ``SQREEN_PATH_PASSLIST``) are never enforced on. Paths are
  compared as the app routes them, on segment boundaries (``/health`` covers ``/health`` and
  ``/health/db``, not ``/healthz``), and a path with a dot or empty segment is never exempt, so
  neither ``/health/../login`` nor ``/api/x/../../health`` is a way around a block. Events are
  still recorded there: a passlist is about enforcement, not visibility.
* Every enforcement records ``sq.action.<kind>`` with the action's id and what matched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqreen_otel._http.client_ip import AMBIGUOUS, resolve_client_ip
from sqreen_otel._log import warn_once
from sqreen_otel._responses.actions import Action, IPNetwork
from sqreen_otel._responses.index import ActionIndex, Match
from sqreen_otel._responses.pages import BlockPages, block_response, redirect_response
from sqreen_otel._responses.passlists import covers, path_passlisted
from sqreen_otel._responses.registry import current_index
from sqreen_otel._stats import stats

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from sqreen_otel._http.client_ip import ClientIP, ClientIPPolicy


class RequestBlocked(BaseException):
    """The identified user is blocked (or redirected) by a security action.

    Raised by ``identify()``, ``for_user(...).identify()``, ``auth_track(True, ...)`` and
    ``signup_track(...)`` during a request that ``SqreenMiddleware`` serves; the middleware
    turns it into the response (a block page or a redirect). A ``BaseException``, like
    ``KeyboardInterrupt``: an app's ``except Exception`` does not swallow it, so the rest of
    the view does not run. Code that would rather decide by itself calls ``is_blocked()``.
    """

    def __init__(self, action_id: str, kind: str, url: str | None = None) -> None:
        super().__init__(f"request blocked by security action {action_id} ({kind})")
        self.action_id = action_id
        self.kind = kind
        self.url = url

    def respond(
        self, environ: WSGIEnvironment, start_response: StartResponse, *, started: bool = False
    ) -> Iterable[bytes]:
        """The WSGI response this block means."""
        if self.url is not None:
            return redirect_response(self.url, environ, start_response, started=started)
        return block_response(settings().pages, environ, start_response, started=started)


@dataclass(frozen=True)
class ResponseSettings:
    enabled: bool = False
    pages: BlockPages = field(default_factory=BlockPages)
    ip_passlist: tuple[IPNetwork, ...] = ()
    path_passlist: tuple[str, ...] = ()
    policy: ClientIPPolicy | None = None
    heuristic_ip: bool = True  # no SQREEN_TRUSTED_PROXIES: forwarding headers are believed
    hmac_key: bytes | None = None


_settings = ResponseSettings()


def use_settings(new: ResponseSettings) -> None:
    global _settings  # noqa: PLW0603 - set by configure()
    _settings = new


def settings() -> ResponseSettings:
    return _settings


SERVING_THREAD = "sqreen_otel.serving_thread"  # environ key: the thread serving the request


def serving(environ: Any) -> None:
    """Mark ``environ`` as served by this thread (user blocks raise only there)."""
    environ[SERVING_THREAD] = threading.get_ident()


def _in_request_thread(environ: Mapping[str, Any] | None) -> bool:
    return environ is not None and environ.get(SERVING_THREAD) == threading.get_ident()


def ip_match(environ: Mapping[str, Any]) -> Match | None:
    """The IP action for this request, if any (passlists honoured)."""
    current = _settings
    if not current.enabled or current.policy is None:
        return None
    index = current_index()
    if not index.has_ip_actions:
        return None
    _warn_heuristic_ip(current, index)
    if path_passlisted(environ, current.path_passlist):
        return None
    client = resolve_client_ip(environ, current.policy)
    if _ip_passlisted(client, current):
        return None
    now = time.time()
    for address in (client.address, *client.candidates):
        if address is not None:
            match = index.match_ip(address, now)
            if match is not None:
                return match
    return None


def _warn_heuristic_ip(current: ResponseSettings, index: ActionIndex) -> None:
    """Say once what a client IP read from forgeable headers (no SQREEN_TRUSTED_PROXIES) means
    for the actions in force (cheap: a set lookup once said)."""
    if not current.heuristic_ip:
        return
    if index.has_ip_actions:
        warn_once(
            "ip_actions_heuristic",
            "IP actions are enforced on a client IP read from forwarding headers that any client can "
            "forge (no SQREEN_TRUSTED_PROXIES): set SQREEN_TRUSTED_PROXIES to your proxies' CIDRs.",
        )
    if current.ip_passlist:
        warn_once(
            "ip_passlist_heuristic",
            "SQREEN_IP_PASSLIST is matched on the socket peer address (REMOTE_ADDR) only: without "
            "SQREEN_TRUSTED_PROXIES the client IP comes from forwarding headers that any client can "
            "forge. Behind a proxy, set SQREEN_TRUSTED_PROXIES to your proxies' CIDRs.",
        )


def _ip_passlisted(client: ClientIP, current: ResponseSettings) -> bool:
    """Whether ``SQREEN_IP_PASSLIST`` exempts this client.

    * Without ``SQREEN_TRUSTED_PROXIES``: the socket peer only. The resolved address comes from
      headers any client can write, and naming a passlisted IP must not exempt a blocked user.
    * For an ambiguous request (trusted-proxy mode, headers naming different clients): only
      when every client the headers named is passlisted. Its resolved address is then the
      proxy's own, the fallback, and a blocked client adding a forged header must not borrow it.
    """
    if not current.ip_passlist:
        return False
    if current.heuristic_ip:
        addresses: tuple[str | None, ...] = (client.peer,)
    elif client.source == AMBIGUOUS:
        addresses = client.candidates
    else:
        addresses = (client.address,)
    return bool(addresses) and all(
        address is not None and covers(current.ip_passlist, address) for address in addresses
    )


def index_in_force() -> ActionIndex | None:
    """The actions in force, or None when there are none (or responses are off): the request
    path's one check when nothing is to be enforced."""
    if not _settings.enabled:
        return None
    index = current_index()
    return index if index.has_ip_actions or index.has_user_actions else None


def user_actions_active() -> bool:
    """Whether a user action is in force (so ``identify()`` may raise ``RequestBlocked``)."""
    return _settings.enabled and current_index().has_user_actions


def enforced(match: Match) -> Action:
    """Count an enforcement (the caller records its event)."""
    stats.add(f"actions_enforced.{match.action.kind}")
    return match.action


def check_user(identifiers: Mapping[str, object], environ: Mapping[str, Any] | None) -> Match | None:
    """The user action to enforce for an identified user, or None (no action, a passlisted
    request, or not on the thread serving a request)."""
    if environ is None or not _in_request_thread(environ):
        return None
    current = _settings
    if not current.enabled:
        return None
    index = current_index()
    if not index.has_user_actions:
        return None
    _warn_heuristic_ip(current, index)
    if path_passlisted(environ, current.path_passlist):
        return None
    if (
        current.ip_passlist
        and current.policy is not None
        and _ip_passlisted(resolve_client_ip(environ, current.policy), current)
    ):
        return None
    match = index.match_user(identifiers, time.time(), current.hmac_key)
    if match is not None:
        enforced(match)
    return match
