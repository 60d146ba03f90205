"""Process-wide counters of what happened to events (exposed by ``sqreen_otel.stats()``)."""

from __future__ import annotations

import itertools
import threading

from sqreen_otel import _fork


def _value(counter: itertools.count[int]) -> int:
    return int(repr(counter)[6:-1])  # "count(N)": reading never advances the counter


class Stats:
    """Exact, thread-safe named counters, cheap on the request path.

    Each name is an ``itertools.count``: advancing it is one atomic C call under the GIL, so
    counting an event takes no lock. Names are documented in docs/events.md.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # only to create counters
        self._counters: dict[str, itertools.count[int]] = {}

    def add(self, name: str, count: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(name, itertools.count())
        for _ in range(count):
            next(counter)

    def snapshot(self) -> dict[str, int]:
        return {name: value for name, counter in list(self._counters.items()) if (value := _value(counter))}

    def reset(self) -> None:
        with self._lock:
            self._counters = {}

    def reinit_after_fork(self) -> None:
        """A fresh lock in a forked child (the parent's may have been held at fork time)."""
        self._lock = threading.Lock()


stats = Stats()

_fork.in_child(stats.reinit_after_fork)
