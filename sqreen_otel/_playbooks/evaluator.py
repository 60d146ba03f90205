"""The live evaluator: a consumer of the host's event store, like a remote exporter.

It is an ``EventExporter`` on its own route of the store, drained by a ``Drainer``: every
process of the app feeds the store, the route's lease makes one evaluator per host at a time
(another worker takes over when it dies), the cursor makes each event evaluated once, and a
batch that fails (Redis or the action store down) stays queued and is retried. Counts live in
memory (one host) or in Redis (``SQREEN_REDIS_URL``: every host's evaluator shares them).

The playbook file is re-read when it changes; a file that does not load keeps the previous
set (and says why, naming the file, line and field).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from sqreen_otel._config import Config
from sqreen_otel._log import log_every
from sqreen_otel._playbooks.engine import Engine
from sqreen_otel._playbooks.fields import Observed
from sqreen_otel._playbooks.react import ActionsFailed, Notifier, Reactor
from sqreen_otel._playbooks.schema import Playbook, PlaybookError, load_file
from sqreen_otel._playbooks.windows import MemoryWindows, RedisWindows, Windows
from sqreen_otel._responses.setup import action_store
from sqreen_otel._responses.sources import ActionStore
from sqreen_otel._scrubbing.scrubber import scrubber_for
from sqreen_otel._shipping.event_model import EventExporter, SecurityEvent
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome, ExportStatus
from sqreen_otel._stats import stats

DESTINATION = "sqreen-otel:playbooks"


class PlaybookFile:
    """The playbooks of a file, re-read when its (mtime, size, inode) changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.playbooks: tuple[Playbook, ...] = ()

    def refresh(self) -> bool:
        """True when a new set was loaded."""
        try:
            info = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        if stamp == self._stamp and stamp is not None:
            return False
        self._stamp = stamp
        try:
            playbooks = load_file(self.path)
        except PlaybookError as error:
            stats.add("playbook_file_errors", 1)
            log_every(
                ("playbooks", self.path),
                60.0,
                logging.ERROR,
                "sqreen_otel playbooks not loaded, %s: %s",
                "the previous set stays active" if self.playbooks else "none active",
                error,
            )
            return False
        self.playbooks = playbooks
        return True


class PlaybookEvaluator(EventExporter):
    max_export_seconds = 30.0

    def __init__(
        self,
        source: PlaybookFile,
        windows: Callable[[], Windows],
        reactor: Reactor,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._source = source
        self._windows_factory = windows
        self._windows: Windows | None = None
        self._reactor = reactor
        self._engine: Engine | None = None
        self._close = close

    def shutdown(self) -> None:
        """At shutdown (the drainer's close): release the action store and Redis connections."""
        self._close()

    @property
    def destination(self) -> str:
        return DESTINATION

    def _current(self) -> Engine:
        if self._windows is None:
            self._windows = self._windows_factory()
        if self._source.refresh() or self._engine is None:
            self._engine = Engine(self._source.playbooks, self._windows)
        return self._engine

    def export_events(self, events: Sequence[SecurityEvent]) -> ExportOutcome:
        try:
            engine = self._current()
            observed = [Observed.from_event(event) for event in events if engine.watches(event.name)]
            firings = engine.observe_all(observed)
            for done, firing in enumerate(firings):
                try:
                    self._reactor.react(firing)
                except ActionsFailed:
                    for undone in firings[done:]:  # the retried batch fires them again
                        engine.unclaim(undone)
                    raise
        except ActionsFailed as error:
            return _unavailable("the action store", str(error))
        except Exception as error:  # Redis down (counting): retried; anything else is a bug
            if type(error).__module__.startswith("redis"):
                return _unavailable("Redis", type(error).__name__)
            raise
        stats.add("playbook_events_evaluated", len(observed))
        return SUCCESS


def _unavailable(what: str, detail: str) -> ExportOutcome:
    stats.add("playbook_evaluation_retries", 1)
    return ExportOutcome(ExportStatus.RETRY, detail=f"{what} is unavailable ({detail}); playbooks wait")


def evaluator_factory(config: Config) -> Callable[[], PlaybookEvaluator]:
    """What the playbooks' drainer builds (in each process that drains)."""
    assert config.playbooks_file is not None
    path = config.playbooks_file

    def build() -> PlaybookEvaluator:
        stores: list[ActionStore] = []  # opened when first used, closed at shutdown
        clients: list[Any] = []

        def shared_store() -> ActionStore:
            if not stores:
                stores.append(action_store(config))
            return stores[0]

        def windows() -> Windows:
            if config.redis_url is None:
                return MemoryWindows()
            try:
                import redis
            except ImportError:
                log_every(
                    ("playbooks", "redis"),
                    3600.0,
                    logging.ERROR,
                    "sqreen_otel playbooks count on this host only: SQREEN_REDIS_URL is set but the "
                    "redis package is missing (pip install 'sqreen-otel[redis]').",
                )
                return MemoryWindows()
            client: Any = redis.Redis.from_url(
                config.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
            clients.append(client)
            return RedisWindows(client, config.redis_prefix)

        def close() -> None:
            for item in (*stores, *clients):
                item.close()
            stores.clear()
            clients.clear()

        source = PlaybookFile(path)
        source.refresh()  # at configure(): an invalid file is reported at start-up, in every process
        reactor = Reactor(shared_store, Notifier(scrubber_for(config).scrub_mapping))
        return PlaybookEvaluator(source, windows, reactor, close)

    return build
