"""Python 3.12+ refuses to start a thread once atexit handlers run; this makes any Python do so.

Imported by the exit probes after ``configure()``: the handler registered here runs before
sqreen_otel's own (atexit is last in, first out), so sqreen_otel's exit hook meets a
``threading.Thread.start`` that raises the error 3.12 raises.
"""

from __future__ import annotations

import atexit
import threading
from typing import NoReturn


def _refuse(self: threading.Thread) -> NoReturn:
    raise RuntimeError("can't create new thread at interpreter shutdown")


def _from_now_on() -> None:
    threading.Thread.start = _refuse  # type: ignore[method-assign]


def install() -> None:
    atexit.register(_from_now_on)
