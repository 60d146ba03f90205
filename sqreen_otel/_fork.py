"""After ``fork()``: every lock and worker of ours is re-created in the child.

A lock held by another thread at fork time stays held forever in the child (that thread does
not exist there), so each module that owns a lock registers a function here that replaces it.
Objects with threads (spool, drainers, pipelines) also check ``os.getpid()`` on use, which
covers a child created by means that skip ``os.register_at_fork`` callbacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_callbacks: list[Callable[[], None]] = []


def in_child(callback: Callable[[], None]) -> None:
    """Run ``callback`` in every child process right after a fork (module-level state)."""
    _callbacks.append(callback)


def _after_fork() -> None:
    for callback in list(_callbacks):
        callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
