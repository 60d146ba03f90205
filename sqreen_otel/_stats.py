"""Process-wide counters of what happened to events (exposed by ``sqreen_otel.stats()``)."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Thread-safe named counters. Names are documented in docs/events.md."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def reinit_after_fork(self) -> None:
        """A fresh lock in a forked child (the parent's may have been held at fork time)."""
        self._lock = threading.Lock()


stats = Stats()


import os  # noqa: E402 - kept next to its single use

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=stats.reinit_after_fork)
