"""Client IP resolution from the WSGI environ.

Two modes (docs/configuration.md explains the trade-off):

* **Sqreen mode** (no trusted proxies configured): scan ``SQREEN_IP_HEADER`` then the usual
  proxy headers in Sqreen's order; the first *global* address wins, a private non-loopback one
  is the fallback, else the socket peer. Works behind unknown proxies, but a client can forge
  its IP by sending its own ``X-Forwarded-For``.
* **Trusted-proxy mode** (``SQREEN_TRUSTED_PROXIES``): headers are believed only when the peer
  is a trusted proxy, and the right-most address that is not a trusted proxy wins, so the
  address cannot be forged by the client.

Headers are hostile input: values are bounded in length and element count, and anything that
does not parse as an IP address is skipped.
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
_TRUSTED_MODE_HEADERS = ("x-forwarded-for", "forwarded")
_MAX_HEADER_CHARS = 8192
_MAX_ELEMENTS = 64
PEER = "peer"


class ClientIP(NamedTuple):
    """The resolved client address, where it came from, and the socket peer."""

    address: str | None
    source: str  # a lower-case header name, or "peer"
    peer: str | None


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
    if not text:
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


def _elements(raw: str) -> list[str]:
    return raw[:_MAX_HEADER_CHARS].split(",")[:_MAX_ELEMENTS]


def _forwarded_for(element: str) -> str | None:
    for pair in element.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip().lower() == "for":
            return value
    return None


def _tokens(header: str, raw: str) -> Iterator[str | None]:
    """The address tokens of one header value, left to right (None: an element without one)."""
    for element in _elements(raw):
        if header == "forwarded":
            yield _forwarded_for(element)
        elif header == "via":
            parts = element.split()
            yield parts[1] if len(parts) >= 2 else None
        else:
            yield element


def _addresses(header: str, raw: str) -> Iterator[IPAddress]:
    for token in _tokens(header, raw):
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


def _in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def _peer(environ: Mapping[str, Any]) -> tuple[IPAddress | None, str | None]:
    raw = environ.get("REMOTE_ADDR")
    if not isinstance(raw, str) or not raw:
        return None, None
    address = parse_address(raw)
    return address, (str(address) if address is not None else raw[:64])


def resolve_client_ip(
    environ: Mapping[str, Any], ip_header: str | None, trusted_proxies: tuple[IPNetwork, ...]
) -> ClientIP:
    """Resolve the client address of one request (see the module docstring for the rules)."""
    return resolve_snapshot(snapshot(environ, ip_header), ip_header, trusted_proxies)


@functools.lru_cache(maxsize=64)
def _keys(ip_header: str | None) -> tuple[str, ...]:
    return _SNAPSHOT_KEYS if ip_header is None else (*_SNAPSHOT_KEYS, _environ_key(ip_header))


@functools.lru_cache(maxsize=4096)
def resolve_snapshot(
    inputs: Inputs, ip_header: str | None, trusted_proxies: tuple[IPNetwork, ...]
) -> ClientIP:
    """Cached on the exact inputs: the same client behind the same proxies resolves once.

    A client sending a new forged header on every request only causes cache misses, each
    costing what an uncached resolution does.
    """
    environ = dict(inputs)
    peer, peer_text = _peer(environ)
    if trusted_proxies:
        return _trusted_mode(environ, ip_header, trusted_proxies, peer, peer_text)
    return _sqreen_mode(environ, ip_header, peer, peer_text)


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


def _trusted_mode(
    environ: Mapping[str, Any],
    ip_header: str | None,
    trusted: tuple[IPNetwork, ...],
    peer: IPAddress | None,
    peer_text: str | None,
) -> ClientIP:
    if peer is None or not _in_networks(peer, trusted):
        return ClientIP(peer_text, PEER, peer_text)
    candidates = (ip_header,) if ip_header is not None else _TRUSTED_MODE_HEADERS
    for header in candidates:
        raw = _header(environ, header)
        if raw is None:
            continue
        nearest_trusted: IPAddress = peer
        for token in reversed(list(_tokens(header, raw))):
            address = parse_address(token) if token is not None else None
            if address is None:
                break  # unparseable hop: nothing to its left can be trusted
            if not _in_networks(address, trusted):
                return ClientIP(str(address), header, peer_text)
            nearest_trusted = address
        return ClientIP(str(nearest_trusted), header if nearest_trusted is not peer else PEER, peer_text)
    return ClientIP(peer_text, PEER, peer_text)
