"""Passlists: clients and paths that security actions never apply to.

``SQREEN_IP_PASSLIST`` (CIDRs) is matched against the resolved client IP; ``SQREEN_PATH_PASSLIST``
(path prefixes) against the request path after resolving ``.``/``..``/empty segments, on
segment boundaries: ``/health`` covers ``/health`` and ``/health/db``, not ``/healthz``, and
``/health/../login`` is ``/login``. Tiny modules with no dependency: the settings parse with them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalized_path(path: str) -> str:
    """``path`` with ``.``/``..``/empty segments resolved (for passlist comparisons)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def path_passlisted(environ: Mapping[str, Any], prefixes: tuple[str, ...]) -> bool:
    if not prefixes:
        return False
    script, path = environ.get("SCRIPT_NAME"), environ.get("PATH_INFO")
    full = normalized_path(
        (script if isinstance(script, str) else "") + (path if isinstance(path, str) else "")
    )
    return any(full == prefix or full.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


def covers(networks: Sequence[IPNetwork], address: str) -> bool:
    """Whether ``address`` is in one of ``networks`` (passlists: short lists, checked directly)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    candidates = (ip, mapped) if mapped is not None else (ip,)
    return any(candidate in network for candidate in candidates for network in networks)
