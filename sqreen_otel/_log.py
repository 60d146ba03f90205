"""The library's own logger, rate-limited per distinct problem.

We run inside someone else's app: we never add handlers or touch the root logger, and a
problem that repeats on every request is reported once, not once per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

from sqreen_otel import _fork

logger = logging.getLogger("sqreen_otel")

_MAX_DISTINCT_KEYS = 1024
_OVERFLOW_INTERVAL_S = 60.0


class _OncePerProblem:
    """Logs each distinct problem key once; past a bound, at most once a minute overall."""

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        self._overflow_next = 0.0

    def __call__(self, key: Hashable, level: int, msg: str, *args: object) -> None:
        if key in self._seen:
            return
        with self._lock:
            if key in self._seen:
                return
            if len(self._seen) < _MAX_DISTINCT_KEYS:
                self._seen.add(key)
            else:
                now = time.monotonic()
                if now < self._overflow_next:
                    return
                self._overflow_next = now + _OVERFLOW_INTERVAL_S
        logger.log(level, msg, *args)

    def reinit_after_fork(self) -> None:
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget what was logged (tests, and a re-configure that changes the rules)."""
        with self._lock:
            self._seen.clear()
            self._overflow_next = 0.0


log_once = _OncePerProblem()
_fork.in_child(log_once.reinit_after_fork)


def warn_once(key: Hashable, msg: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen."""
    log_once(key, logging.WARNING, msg, *args)


_periodic_lock = threading.Lock()
_periodic_next: dict[Hashable, float] = {}


def _reinit_periodic_lock() -> None:
    global _periodic_lock  # noqa: PLW0603 - replaced in a forked child
    _periodic_lock = threading.Lock()


_fork.in_child(_reinit_periodic_lock)


def log_every(key: Hashable, interval: float, level: int, msg: str, *args: object) -> None:
    """Log ``key``'s message at most once per ``interval`` seconds (recurring conditions)."""
    now = time.monotonic()
    with _periodic_lock:
        if now < _periodic_next.get(key, 0.0):
            return
        _periodic_next[key] = now + interval
    logger.log(level, msg, *args)


def reset_logs() -> None:
    """Forget what was logged (a re-configure, and tests)."""
    log_once.reset()
    with _periodic_lock:
        _periodic_next.clear()
