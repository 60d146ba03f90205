"""Durations as people write them (``30s``, ``15m``, ``2h``, ``7d``, ``1w``; a bare number is
seconds): the CLI's ``--duration`` and the playbooks' windows, cool-downs and action durations."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> float:
    """Seconds; ``ValueError`` (naming the accepted forms, never echoing much input) otherwise."""
    match = _DURATION.fullmatch(value.strip()) if len(value) <= 64 else None
    if match is None:
        raise ValueError("not a duration (use 30s, 15m, 2h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]
