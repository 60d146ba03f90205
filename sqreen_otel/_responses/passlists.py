"""Passlists: clients and paths that security actions never apply to.

``SQREEN_IP_PASSLIST`` (CIDRs) is matched against the client IP (see ``enforcement``);
``SQREEN_PATH_PASSLIST`` (path prefixes) against the request path *as the app routes it* (the
raw ``SCRIPT_NAME`` + ``PATH_INFO``: werkzeug and Django do not resolve dot segments), on
segment boundaries: ``/health`` covers ``/health``, ``/health/`` and ``/health/db``, not
``/healthz``. A path holding a ``.``, ``..`` or empty segment (percent-encoded dots included:
``/api/%2e%2e/health``) is never exempt, whatever it resolves to: ``/api/x/../../health`` may
reach a catch-all ``/api/<path>`` view. Tiny modules with no dependency: the settings parse with
them.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalized_path(path: str) -> str:
    """``path`` with ``.``/``..``/empty segments resolved (the passlist's own prefixes)."""
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


# A segment of nothing but dots (``%2e`` included), or an empty one, anywhere but the very end
# (one trailing slash is fine): a path whose routing may differ from its resolved form.
_UNPLAIN = re.compile(r"/(?:\.|%2e)*(?=/)|/(?:\.|%2e)+$", re.IGNORECASE)


def path_passlisted(environ: Mapping[str, Any], prefixes: tuple[str, ...]) -> bool:
    """Whether the raw request path is under a prefix and holds no dot or empty segment."""
    if not prefixes:
        return False
    script, path = environ.get("SCRIPT_NAME"), environ.get("PATH_INFO")
    full = (script if isinstance(script, str) else "") + (path if isinstance(path, str) else "")
    # Checked decoded once more too: ``..%2f`` is ``../`` to an app that decodes it again.
    if not full.startswith("/") or _UNPLAIN.search(full) or _UNPLAIN.search(urllib.parse.unquote(full)):
        return False
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
