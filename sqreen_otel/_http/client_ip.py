"""Client IP resolution from the WSGI environ.

Three modes (docs/configuration.md explains the trade-off):

* **Sqreen mode** (``SQREEN_TRUSTED_PROXIES`` unset): scan ``SQREEN_IP_HEADER`` then the usual
  proxy headers in Sqreen's order; the first *global* address wins, a private non-loopback one
  is the fallback, else the socket peer. Works behind unknown proxies, but a client can forge
  its IP by sending its own ``X-Forwarded-For``.
* **Trusted-proxy mode** (``SQREEN_TRUSTED_PROXIES``): headers are believed only when the peer
  is a trusted proxy. The header is read **from its right end** (the part the proxies wrote),
  and the right-most address that is not a trusted proxy wins. Only ``SQREEN_IP_HEADER`` is
  read when it is set; otherwise ``X-Forwarded-For``, ``Forwarded`` and ``X-Real-IP`` are each
  walked and must agree: when they name different clients the request is *ambiguous* (a
  client-sent header cannot be told from the proxy's) and the peer is used instead.
* **Peer only**: a client-IP security setting was set but invalid (fail closed), so no
  forwarding header is believed at all.

Headers are hostile input: the work per header is bounded (8 KiB, 64 elements), taken from
the end that the mode trusts, and anything that does not parse as an IP address is skipped.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from sqreen_otel._config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SQREEN_HEADERS = (
    "x-forwarded-for",
    "x-client-ip",
    "x-real-ip",
    "x-forwarded",
    "x-cluster-client-ip",
    "forwarded-for",
    "forwarded",
    "via",
)
# What trusted mode reads when SQREEN_IP_HEADER is not set: the headers proxies write.
TRUSTED_MODE_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
MAX_HEADER_CHARS = 8192
MAX_ELEMENTS = 64
PEER = "peer"
AMBIGUOUS = "ambiguous"  # trusted mode: the forwarding headers name different clients


class ClientIPPolicy(NamedTuple):
    """How to resolve client IPs (hashable: part of the resolution cache key)."""

    ip_header: str | None = None
    trusted_proxies: tuple[IPNetwork, ...] | None = None  # None: Sqreen mode
    peer_only: bool = False  # fail closed: believe no forwarding header


class ClientIP(NamedTuple):
    """The resolved client address, where it came from, and the socket peer.

    ``candidates`` lists, for an ambiguous request, every client address its headers named
    (so that enforcement can consider each of them); otherwise it is empty.
    """

    address: str | None
    source: str  # a lower-case header name, "peer" or "ambiguous"
    peer: str | None
    candidates: tuple[str, ...] = ()


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


_ENVIRON_KEYS = {header: _environ_key(header) for header in SQREEN_HEADERS}
_SNAPSHOT_KEYS = ("REMOTE_ADDR", *_ENVIRON_KEYS.values())


Inputs = tuple[tuple[str, Any], ...]


def snapshot(environ: Mapping[str, Any], ip_header: str | None) -> Inputs:
    """The environ values resolution reads, copied at request start.

    Cheap (a few dict lookups) and immune to later rewrites of the environ by the app (for
    example werkzeug's ProxyFix replacing REMOTE_ADDR). Also the key of the resolution cache.
    """
    return tuple([(key, environ[key]) for key in _keys(ip_header) if key in environ])


@functools.lru_cache(maxsize=4096)
def parse_address(token: str) -> IPAddress | None:
    """An IP from ``1.2.3.4``, ``1.2.3.4:80``, ``[v6]:80``, ``v6`` or a quoted form; else None.

    Cached: the same proxies and clients come back request after request, and ``ipaddress``
    parsing is the costly part of resolution. A miss costs what an uncached parse does.
    """
    text = token.strip().strip('"').strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _left_elements(raw: str) -> list[str]:
    """The first elements of a header (Sqreen mode reads left to right)."""
    return raw[:MAX_HEADER_CHARS].split(",")[:MAX_ELEMENTS]


def _right_elements(raw: str) -> list[str]:
    """The last elements of a header, the proxy-written end (trusted mode reads right to left).

    A client can pad the header at will, but what proxies append is always at the right end,
    so the bound is taken from there; an element cut by the bound is left out.
    """
    window = raw[-MAX_HEADER_CHARS:]
    elements = window.split(",")
    if len(window) < len(raw):
        elements = elements[1:]
    return elements[-MAX_ELEMENTS:]


def _forwarded_for(element: str) -> str | None:
    for pair in element.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip().lower() == "for":
            return value
    return None


def _token(header: str, element: str) -> str | None:
    """The address token of one header element (None: the element has none)."""
    if header == "forwarded":
        return _forwarded_for(element)
    if header == "via":
        parts = element.split()
        return parts[1] if len(parts) >= 2 else None
    return element


def _addresses(header: str, raw: str) -> Iterator[IPAddress]:
    for element in _left_elements(raw):
        token = _token(header, element)
        if token is not None:
            address = parse_address(token)
            if address is not None:
                yield address


@functools.lru_cache(maxsize=4096)
def _kind(address: IPAddress) -> int:
    """_GLOBAL, _PRIVATE (private and not loopback: Sqreen's fallback) or _OTHER; cached."""
    if address.is_global:
        return _GLOBAL
    if address.is_private and not address.is_loopback:
        return _PRIVATE
    return _OTHER


_GLOBAL, _PRIVATE, _OTHER = 0, 1, 2


def _header(environ: Mapping[str, Any], header: str) -> str | None:
    value = environ.get(_ENVIRON_KEYS.get(header) or _environ_key(header))
    return value if isinstance(value, str) and value else None


def in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def _peer(environ: Mapping[str, Any]) -> tuple[IPAddress | None, str | None]:
    raw = environ.get("REMOTE_ADDR")
    if not isinstance(raw, str) or not raw:
        return None, None
    address = parse_address(raw)
    return address, (str(address) if address is not None else raw[:64])


def resolve_client_ip(environ: Mapping[str, Any], policy: ClientIPPolicy) -> ClientIP:
    """Resolve the client address of one request (see the module docstring for the rules)."""
    return resolve_snapshot(snapshot(environ, policy.ip_header), policy)


@functools.lru_cache(maxsize=64)
def _keys(ip_header: str | None) -> tuple[str, ...]:
    return _SNAPSHOT_KEYS if ip_header is None else (*_SNAPSHOT_KEYS, _environ_key(ip_header))


@functools.lru_cache(maxsize=4096)
def resolve_snapshot(inputs: Inputs, policy: ClientIPPolicy) -> ClientIP:
    """Cached on the exact inputs: the same client behind the same proxies resolves once.

    A client sending a new forged header on every request only causes cache misses, each
    costing what an uncached resolution does.
    """
    environ = dict(inputs)
    peer, peer_text = _peer(environ)
    if policy.peer_only:
        return ClientIP(peer_text, PEER, peer_text)
    if policy.trusted_proxies is not None:
        return _trusted_mode(environ, policy, peer, peer_text)
    return _sqreen_mode(environ, policy.ip_header, peer, peer_text)


def _sqreen_mode(
    environ: Mapping[str, Any], ip_header: str | None, peer: IPAddress | None, peer_text: str | None
) -> ClientIP:
    headers = (
        SQREEN_HEADERS if ip_header is None else (ip_header, *(h for h in SQREEN_HEADERS if h != ip_header))
    )
    fallback: tuple[IPAddress, str] | None = None
    for header in headers:
        raw = _header(environ, header)
        if raw is None:
            continue
        for address in _addresses(header, raw):
            kind = _kind(address)
            if kind == _GLOBAL:
                return ClientIP(str(address), header, peer_text)
            if fallback is None and kind == _PRIVATE:
                fallback = (address, header)
    if fallback is not None and (peer is None or _kind(peer) != _GLOBAL):
        return ClientIP(str(fallback[0]), fallback[1], peer_text)
    return ClientIP(peer_text, PEER, peer_text)


class _Walk(NamedTuple):
    client: IPAddress | None  # the right-most untrusted hop
    nearest_trusted: IPAddress  # the last trusted hop reached (the peer if none)
    unknown: bool = False  # stopped on a hop that is not an address (``for=unknown``, obfuscated)


def _walk(header: str, raw: str, trusted: tuple[IPNetwork, ...], peer: IPAddress) -> _Walk:
    """Right to left through the proxy-written end of a header, to the first untrusted hop."""
    nearest: IPAddress = peer
    for element in reversed(_right_elements(raw)):
        token = _token(header, element)
        address = parse_address(token) if token is not None else None
        if address is None:
            return _Walk(None, nearest, unknown=True)  # nothing to its left can be trusted
        if not in_networks(address, trusted):
            return _Walk(address, nearest)
        nearest = address
    return _Walk(None, nearest)


def _trusted_mode(
    environ: Mapping[str, Any], policy: ClientIPPolicy, peer: IPAddress | None, peer_text: str | None
) -> ClientIP:
    trusted = policy.trusted_proxies or ()
    if peer is None or not in_networks(peer, trusted):
        return ClientIP(peer_text, PEER, peer_text)
    headers = (policy.ip_header,) if policy.ip_header is not None else TRUSTED_MODE_HEADERS
    walks = [
        (header, _walk(header, raw, trusted, peer))
        for header in headers
        if (raw := _header(environ, header)) is not None
    ]
    clients = {walk.client for _, walk in walks if walk.client is not None}
    # A header that names an unknown client (RFC 7239 ``for=unknown``, an obfuscated or garbled
    # hop) disagrees with one that names an address: either could be the client's own.
    unknown = any(walk.unknown for _, walk in walks)
    if len(clients) > 1 or (clients and unknown and policy.ip_header is None):
        return ClientIP(peer_text, AMBIGUOUS, peer_text, tuple(sorted(str(c) for c in clients)))
    for header, walk in walks:
        if walk.client is not None:
            return ClientIP(str(walk.client), header, peer_text)
    for header, walk in walks:  # every hop trusted: the farthest proxy reached
        if walk.nearest_trusted is not peer:
            return ClientIP(str(walk.nearest_trusted), header, peer_text)
    return ClientIP(peer_text, PEER, peer_text)
