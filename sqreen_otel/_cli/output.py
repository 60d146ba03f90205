"""Output shared by the commands: tables of hostile text (already escaped by the caller)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO


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
