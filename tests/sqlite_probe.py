"""Run by test_sqlite_lifecycle.py: the SQLite connections of a process that records events,
forks a child that records too, and exits normally (both of them).

Prints, from an exit hook that runs after every other (registered first), how many SQLite
connections each process still has open, and how many it abandoned as inherited from its parent.
"""

from __future__ import annotations

import atexit
import gc
import os
import sqlite3
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel import _sqlite


def report() -> None:
    inherited = {id(connection) for connection in _sqlite._inherited}
    still_open = 0
    for candidate in gc.get_objects():
        if isinstance(candidate, sqlite3.Connection) and id(candidate) not in inherited:
            try:
                candidate.total_changes  # noqa: B018 - raises on a closed connection
            except sqlite3.ProgrammingError:
                continue
            still_open += 1
    role = "parent" if os.getpid() == PARENT else "child"
    print(f"{role} open={still_open} inherited={len(inherited)}", flush=True)


def record(tracer_provider: TracerProvider, name: str) -> None:
    with tracer_provider.get_tracer("probe").start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track(name)
    assert sqreen_otel.flush(10)


PARENT = os.getpid()

if __name__ == "__main__":
    atexit.register(report)  # first registered, last run
    folder = sys.argv[1]
    provider = TracerProvider(shutdown_on_exit=False)
    sqreen_otel.configure(
        tracer_provider=provider,
        exporter="local",
        local_store=os.path.join(folder, "events.db"),
        actions_store=os.path.join(folder, "actions.db"),
        heartbeat_delay=3600,
    )
    record(provider, "parent.before.fork")  # the writer's connection is open now
    pid = os.fork()
    if pid == 0:
        record(provider, "child.event")
        sys.exit(0)  # a normal exit: exit hooks, then the interpreter's finalization
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    record(provider, "parent.after.fork")  # the parent's connection still works
