"""Each process's active actions, refreshed off the request path.

The request path reads ``current()``: the index of the moment, an attribute read, no I/O, no
lock. A daemon thread (one per process, restarted after ``fork()``) refreshes it every
``SQREEN_ACTIONS_REFRESH`` seconds (1 s): it checks the file's stat and the store's version
(one tiny query) and rebuilds the index when either changed, or when an action expired. So
an action added anywhere (the CLI, a playbook, another host on Redis) is enforced by every
worker within about a second. ``configure()`` loads the set once before the app serves: a
block in force at start-up applies from the first request.

A store or file that cannot be read never changes what is enforced: the last known set stays
in force, the outage is logged (once a minute) and counted (``action_store_unavailable``,
``actions_file_invalid``). Invalid actions are rejected one by one, each logged with its id
and the reason (``actions_rejected``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqreen_otel import _fork
from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import log_every
from sqreen_otel._responses.actions import Action, parse_actions
from sqreen_otel._responses.index import EMPTY, ActionIndex
from sqreen_otel._responses.sources import ActionsFile, ActionStore, FileInvalid, StoreUnavailable
from sqreen_otel._stats import stats

Clock = Callable[[], float]
_NEVER = float("inf")


@dataclass
class _Loaded:
    """What a source gave last time (kept when it cannot be read)."""

    version: object = None
    raw: tuple[Any, ...] = ()


class ActionRegistry:
    """The actions from a file and a store, as one index (see the module docstring)."""

    def __init__(
        self,
        file: ActionsFile | None,
        store: ActionStore | None,
        *,
        refresh_s: float = 1.0,
        clock: Clock = time.time,
    ) -> None:
        self.file = file
        self.store = store
        self.refresh_s = refresh_s
        self.clock = clock
        self._index: ActionIndex = EMPTY
        self._file = _Loaded()
        self._store = _Loaded()
        self._first_seen: dict[str, float] = {}
        self._rejected_logged: set[tuple[str, str]] = set()
        self._reset_thread()

    def _reset_thread(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- request path ---------------------------------------------------------------------------

    def current(self) -> ActionIndex:
        """The actions in force now (starts the refresher in a new or forked process: the
        at-fork hook resets it in a child)."""
        if self._thread is None:
            self._start()
        index = self._index
        if index.valid_until != _NEVER and self.clock() >= index.valid_until:
            self._wake.set()  # an action expired: rebuild soon (matching re-checks expiry meanwhile)
        return index

    # -- refresher ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._pid != os.getpid():
            self._reset_thread()
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._run, name="sqreen_otel.actions", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down
            with self._lock:
                self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(self.refresh_s)
            self._wake.clear()
            if self._stopped:
                self._close_store()  # stop() left it to us: we may have been using it
                return
            self._refresh_guarded("actions refresh")

    def _refresh_guarded(self, where: str) -> None:
        """``refresh()``, whatever it raises: the refresher thread must outlive any failure (a
        dead one would freeze the set in force for good), and configure() never raises for it."""
        try:
            self.refresh()
        except Exception as error:  # noqa: BLE001 - counted and logged; the last set stays in force
            report_internal_error(where, error)

    def refresh(self) -> bool:
        """Re-read what changed and rebuild the index if needed; True if it was rebuilt."""
        changed = self._refresh_file() | self._refresh_store()
        now = self.clock()
        if not changed and now < self._index.valid_until:
            return False
        self._rebuild(now)
        return True

    def _refresh_file(self) -> bool:
        if self.file is None or not self.file.changed():
            return False
        try:
            raw = tuple(self.file.read())
        except FileInvalid as error:
            stats.add("actions_file_invalid")
            log_every(
                ("actions_file", self.file.path),
                60.0,
                logging.ERROR,
                "sqreen_otel: SQREEN_ACTIONS_FILE %s cannot be used: %s; the last good set of actions "
                "stays in force.",
                self.file.path,
                error,
            )
            return False
        self._file.raw = raw
        return True

    def _refresh_store(self) -> bool:
        if self.store is None:
            return False
        try:
            version = self.store.version()
            if version == self._store.version and self._store.version is not None:
                return False
            raw = tuple(self.store.list_actions())
        except Exception as error:  # noqa: BLE001 - a corrupted store is a store that cannot be read
            self._store.version = None  # re-read it all next time: a repaired store may reuse a version
            stats.add("action_store_unavailable")
            log_every(
                ("action_store", self.store.description),
                60.0,
                logging.ERROR,
                "sqreen_otel: the action store (%s) cannot be read (%s); the last known actions stay in "
                "force.",
                self.store.description,
                type(error).__name__ if not isinstance(error, StoreUnavailable) else error,
            )
            return False
        self._store = _Loaded(version, raw)
        return True

    def _rebuild(self, now: float) -> None:
        items = [*self._file.raw, *self._store.raw]
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("action_id"), str):
                self._first_seen.setdefault(item["action_id"], now)
        actions, rejected = parse_actions(items, self._first_seen, now)
        for action_id, reason in rejected:
            stats.add("actions_rejected")
            if (action_id, reason) not in self._rejected_logged and len(self._rejected_logged) < 1024:
                self._rejected_logged.add((action_id, reason))
                log_every(
                    ("action_rejected", action_id, reason),
                    60.0,
                    logging.WARNING,
                    "sqreen_otel rejected action %s: %s.",
                    action_id,
                    reason,
                )
        self._index = ActionIndex(actions, now)

    def load_now(self) -> None:
        """A synchronous first load (at configure, before the app serves); never raises."""
        self._refresh_guarded("actions load")

    def stop(self, wait: float = 0.0) -> None:
        """Refresh no more (the actions in force stay) and close the store: here when no
        refresher runs, else by the refresher itself once its refresh in progress is over
        (waited for up to ``wait`` seconds)."""
        if self._pid != os.getpid():
            self._reset_thread()  # a forked child: the parent's refresher is not ours
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread() and wait > 0:
            thread.join(wait)
        if thread is None or not thread.is_alive():
            self._close_store()

    def _close_store(self) -> None:
        if self.store is None:
            return
        try:
            self.store.close()
        except Exception as exc:  # noqa: BLE001 - stopping must not raise into the host
            report_internal_error("action store close", exc)

    def actions(self) -> tuple[Action, ...]:
        return self._index.actions


_registry: ActionRegistry | None = None


def use_registry(registry: ActionRegistry | None) -> None:
    """Enforce ``registry``'s actions from now on (None: enforcement off)."""
    global _registry, _exit_hook_registered  # noqa: PLW0603 - one exit hook for the process
    old, _registry = _registry, registry
    if old is not None and old is not registry:
        old.stop()
    if registry is not None and not _exit_hook_registered:
        atexit.register(_stop_at_exit)
        _exit_hook_registered = True


_exit_hook_registered = False


def _stop_at_exit() -> None:
    """At exit: the refresher stops and the store is closed (the actions in force stay)."""
    registry = _registry
    if registry is not None:
        registry.stop(wait=1.0)  # a refresh in progress closes the store itself if it takes longer


def current_index() -> ActionIndex:
    """The actions in force in this process (an empty index when responses are off)."""
    registry = _registry
    return EMPTY if registry is None else registry.current()


def _after_fork() -> None:
    registry = _registry
    if registry is not None:
        registry._reset_thread()


_fork.in_child(_after_fork)
