"""Never raise into the host: the one boundary every public entry point goes through."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from sqreen_otel._log import log_once
from sqreen_otel._recording.validate import ArgumentTypeError
from sqreen_otel._stats import stats

P = ParamSpec("P")
R = TypeVar("R")


def report_internal_error(where: str, exc: BaseException) -> None:
    """Log an internal failure without its message (it may hold application data)."""
    stats.add("internal_errors")
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    location = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame is not None else "?"
    log_once(
        ("internal", where, type(exc).__name__, location),
        logging.ERROR,
        "Internal error in sqreen_otel %s (%s at %s); the call had no effect. Please report it.",
        where,
        type(exc).__name__,
        location,
    )


def guarded(fallback: Callable[..., Any]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let documented ``TypeError``s through; turn any other failure into ``fallback(*args)``."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        where = function.__qualname__

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except ArgumentTypeError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point of the guard: nothing reaches the host
                report_internal_error(where, exc)
                return fallback(*args)  # type: ignore[no-any-return]

        return wrapper

    return decorate
