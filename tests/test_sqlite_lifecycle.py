"""Every SQLite connection we open is closed by the process that opened it: at shutdown, when
an error makes it suspect, and never by a forked child (which abandons its parent's)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from _support import run_python

from sqreen_otel import _sqlite

PROBE = Path(__file__).with_name("sqlite_probe.py")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_abandons_its_parents_connections_and_each_closes_its_own(tmp_path: Path) -> None:
    # -X dev shows ResourceWarning: Python 3.13+ warns for a connection collected unclosed.
    completed = run_python(["-X", "dev", str(PROBE), str(tmp_path)], tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "unclosed database" not in completed.stderr, completed.stderr
    reports = dict(line.split(" ", 1) for line in completed.stdout.splitlines())
    assert reports["parent"] == "open=0 inherited=0", completed.stdout
    # The child inherited the writer's and the action store's connections: abandoned, not closed.
    assert reports["child"] == "open=0 inherited=2", completed.stdout
    with closing(sqlite3.connect(tmp_path / "events.db")) as db:
        names = sorted(name for (name,) in db.execute("SELECT name FROM events"))
    assert names == ["child.event", "parent.after.fork", "parent.before.fork"]


def test_an_abandoned_connection_is_kept_and_never_closed() -> None:
    connection = sqlite3.connect(":memory:")
    try:
        before = _sqlite.inherited_count()
        _sqlite.abandon_inherited(connection)
        assert _sqlite.inherited_count() == before + 1
        assert connection.execute("SELECT 1").fetchone() == (1,)  # still open
    finally:
        _sqlite._inherited.remove(connection)
        connection.close()


def test_close_quietly_closes_and_tolerates_none() -> None:
    connection = sqlite3.connect(":memory:")
    _sqlite.close_quietly(connection)
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")
    _sqlite.close_quietly(None)
    _sqlite.close_quietly(connection)  # twice: no error
