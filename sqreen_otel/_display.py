"""Printing stored values, which come from attackers: escape what a terminal would obey.

Control characters (C0, DEL, C1: ESC and OSC sequences, newlines, carriage returns...),
Unicode line and paragraph separators, and bidirectional overrides could clear an operator's
screen, forge table rows or reorder text. They are shown as ``\\xNN`` / ``\\uNNNN`` escapes;
a backslash is doubled so an escape in the data cannot pass for one of ours.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` with every terminal-active or misleading character escaped (one line, inert)."""
    return _UNSAFE.sub(_escape, text)
