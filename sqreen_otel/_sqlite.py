"""The end of our SQLite connections: every one is closed by the process that opened it.

Python 3.13 warns (``ResourceWarning``) for a connection garbage-collected unclosed, and the
collector then closes it. Two cases:

* A connection we stop using in this process (an error made it suspect, the store is shut
  down): ``close_quietly`` closes it at once.
* A connection a forked child inherited from its parent: SQLite forbids using it across
  ``fork()``, and closing it in the child is a use (it may checkpoint the WAL or release locks
  the parent's copy relies on) while the parent still works with it. The child abandons it:
  ``abandon_inherited`` keeps it from ever being collected, so it is neither closed nor warned
  about, not even at the child's exit (the kernel closes its descriptors then, as ``os._exit``
  would; SQLite runs no close logic in the child).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable

_inherited: list[sqlite3.Connection] = []


def close_quietly(connection: sqlite3.Connection | None) -> None:
    """Close ``connection`` (ours, in this process) whatever state it is in."""
    if connection is None:
        return
    with contextlib.suppress(sqlite3.Error):  # a connection in error is closed all the same
        connection.close()


def abandon_inherited(connection: sqlite3.Connection | None) -> None:
    """In a forked child: the parent's ``connection``, never used, closed nor collected here."""
    if connection is None:
        return
    _inherited.append(connection)  # while the child runs
    try:
        import ctypes

        # Through the interpreter's own finalization too: a reference nothing releases.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(connection))
    except (ImportError, AttributeError, OSError):
        pass  # no ctypes: at the child's exit the collector closes it (and may warn)


def inherited_count() -> int:
    """How many parent connections this process abandoned (for tests and diagnostics)."""
    return len(_inherited)


class ProcessConnection:
    """One connection per process, opened on first use: a forked child abandons the parent's
    and opens its own; ``close`` closes ours (a parent's is only abandoned)."""

    def __init__(self) -> None:
        self.connection: sqlite3.Connection | None = None
        self._pid = 0

    def get(self, open_new: Callable[[], sqlite3.Connection]) -> tuple[sqlite3.Connection, bool]:
        """This process's connection, and whether it was just opened."""
        if self.connection is not None and self._pid != os.getpid():
            abandon_inherited(self.connection)  # a forked child never uses the parent's
            self.connection = None
        if self.connection is not None:
            return self.connection, False
        self.connection, self._pid = open_new(), os.getpid()
        return self.connection, True

    def close(self) -> None:
        """Close ours (a later ``get`` opens a new one); a parent's is only abandoned."""
        if self._pid == os.getpid():
            close_quietly(self.connection)
        else:
            abandon_inherited(self.connection)
        self.connection = None
