"""What the commands share: tables of hostile text (already escaped by the caller), and the
check that a path names an event store before it is opened read-only."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import TextIO


def store_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as the event store (missing, not a regular file), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return f"no event store at {path} (set SQREEN_LOCAL_STORE or --store)"
    if not stat.S_ISREG(mode):
        return f"{path} is not an event store (not a regular file)"
    return None


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int], out: TextIO) -> None:
    sizes = [
        min(width, max([len(h), *(len(r[i]) for r in rows)]))
        for i, (h, width) in enumerate(zip(headers, widths, strict=True))
    ]
    line = "  ".join(h.ljust(size) for h, size in zip(headers, sizes, strict=True))
    out.write(line.rstrip() + "\n" + "  ".join("-" * size for size in sizes) + "\n")
    for row in rows:
        out.write(
            "  ".join(_clip(cell, size).ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip()
            + "\n"
        )
