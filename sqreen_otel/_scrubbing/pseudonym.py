"""Keyed pseudonyms of user identifiers (``SQREEN_USER_ID_HMAC_KEY``), one definition for all.

The request path writes them on host spans and the export path on what it ships; both must
produce the same value for the same user, so both call this.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(key: bytes, value: object) -> str:
    """HMAC-SHA256 (hex) of the identifier's text: ``42`` and ``"42"`` give the same pseudonym."""
    return hmac.new(key, str(value).encode("utf-8", "replace"), hashlib.sha256).hexdigest()
