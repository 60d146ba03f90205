"""What a firing does: security actions into the shared store, a webhook notification, a log
line, and the ``sq.playbook.<name>`` event.

Action ids are derived from the playbook, the response and its target
(``playbook-<name>-<hash>-<kind>``): a firing carried out twice (a batch retried) or by two
hosts writes one action, not two, and a target firing again extends its action.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import context as otel_context

from sqreen_otel._display import safe_text
from sqreen_otel._log import log_every
from sqreen_otel._playbooks.engine import Firing
from sqreen_otel._playbooks.schema import RESPONSE_KINDS, Response
from sqreen_otel._responses.actions import ActionError, parse_action
from sqreen_otel._responses.sources import ActionStore, StoreUnavailable
from sqreen_otel._shipping.export_result import ExportStatus
from sqreen_otel._stats import stats

PLAYBOOK_EVENT_TYPE: Final = "playbook"
NOTIFY_ATTEMPTS: Final = 4
NOTIFY_QUEUE: Final = 1000


class ActionsFailed(Exception):
    """The shared action store refused a firing's actions (the batch is retried)."""


def playbook_event_name(name: str) -> str:
    return f"sq.playbook.{name}"


def action_id(firing: Firing, kind: str, target: object) -> str:
    """One id per playbook, response and target: the same target firing again extends its
    action, another target (a second IP for the same account) gets its own."""
    text = json.dumps([firing.playbook.name, kind, target], sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"playbook-{firing.playbook.name}-{digest}-{kind}"


def action_for(firing: Firing, response: Response, now: float) -> dict[str, Any] | None:
    """The raw action (Sqreen's model) for a block/redirect response; None when the event has
    no target for it (no client IP, no user)."""
    playbook, event = firing.playbook, firing.event
    parameters: dict[str, Any] = {}
    if response.kind.endswith("_ip"):
        ip = firing.group if playbook.group_by.is_ip else event.request.get("client_ip")
        if not ip:
            return None
        parameters["ip_cidr"] = [ip]
    else:
        if playbook.group_by.is_user_key:
            user = {playbook.group_by.key: firing.group}
        else:
            user = {str(key): value for key, value in event.user.items()}
        if not user:
            return None
        parameters["users"] = [user]
    if response.url is not None:
        parameters["url"] = response.url
    target = parameters.get("ip_cidr") or parameters.get("users")
    return {
        "action_id": action_id(firing, response.kind, target),
        "action": response.kind,
        "created_at": now,
        "duration": response.duration,
        "parameters": parameters,
    }


def summary(firing: Firing, action_ids: list[str]) -> dict[str, Any]:
    """What a notification says: the playbook, the group and the count; no event data."""
    playbook = firing.playbook
    return {
        "playbook": playbook.name,
        "group_by": playbook.group_by.text,
        "group": firing.group,
        "count": firing.reached,
        "threshold": playbook.threshold,
        "window_seconds": playbook.window,
        "fired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(firing.at)),
        "actions": action_ids,
    }


class Notifier:
    """POSTs notifications from its own thread (never the evaluator's), retried with backoff."""

    def __init__(self, scrub: Callable[[dict[str, Any]], dict[str, Any]], timeout: float = 5.0) -> None:
        self._scrub = scrub
        self._timeout = timeout
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(NOTIFY_QUEUE)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def send(self, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(self._scrub(payload), ensure_ascii=True, allow_nan=False, default=str).encode()
        if self._pid != os.getpid():  # a forked child: its own queue and thread
            self.__init__(self._scrub, self._timeout)  # type: ignore[misc]
        try:
            self._queue.put_nowait((url, body))
        except queue.Full:
            stats.add("playbook_notifications_dropped", 1)
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="sqreen_otel.playbooks.notify", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # interpreter exit: the notification cannot go out
                    stats.add("playbook_notifications_dropped", 1)
                    return
                self._thread = thread

    def _run(self) -> None:
        from sqreen_otel.exporters._transport import HttpTransport

        while True:
            url, body = self._queue.get()
            try:
                transport = HttpTransport(url, {"Content-Type": "application/json"}, timeout=self._timeout)
            except ValueError:
                stats.add("playbook_notifications_failed", 1)
                continue
            delay = 1.0
            try:
                for attempt in range(NOTIFY_ATTEMPTS):
                    outcome = transport.post(body)
                    if outcome.status is ExportStatus.SUCCESS:
                        stats.add("playbook_notifications_sent", 1)
                        break
                    if outcome.status is ExportStatus.PERMANENT or attempt == NOTIFY_ATTEMPTS - 1:
                        stats.add("playbook_notifications_failed", 1)
                        log_every(
                            ("notify", _origin(url)),
                            60.0,
                            logging.WARNING,
                            "sqreen_otel playbook notification to %s failed (%s).",
                            _origin(url),
                            outcome.detail or outcome.status.value,
                        )
                        break
                    time.sleep(min(60.0, outcome.retry_after or delay))
                    delay *= 2
            finally:
                transport.close()


def _origin(url: str) -> str:
    """scheme://host:port only: a webhook's path and query often hold its secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class Reactor:
    """Carries out firings (the live evaluator; ``playbooks test`` only prints them)."""

    def __init__(
        self,
        store: Callable[[], ActionStore],
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock

    def react(self, firing: Firing) -> None:
        """Raises ``ActionsFailed`` when the action store cannot take the actions."""
        playbook = firing.playbook
        now = self._clock()
        ids: list[str] = []
        for response in playbook.responses:
            if response.kind not in RESPONSE_KINDS:
                continue
            raw = action_for(firing, response, now)
            if raw is None:
                stats.add("playbook_actions_without_target", 1)
                continue
            try:
                action = parse_action(raw, now)
            except ActionError as error:  # a group value that is no IP, say: nothing to block
                stats.add("playbook_actions_invalid", 1)
                log_every(
                    ("invalid", playbook.name),
                    60.0,
                    logging.WARNING,
                    "sqreen_otel playbook %s: its %s action is not valid for this group (%s).",
                    playbook.name,
                    response.kind,
                    error,
                )
                continue
            try:
                self._store().put(action.to_json())
            except StoreUnavailable as error:
                raise ActionsFailed(str(error)) from None
            ids.append(action.action_id)
        stats.add("playbook_firings", 1)
        for response in playbook.responses:
            if response.kind == "notify" and response.url is not None:
                self._notifier.send(response.url, summary(firing, ids))
            elif response.kind == "log":  # at most one line a second per playbook: events keep all
                log_every(
                    ("fired", playbook.name),
                    1.0,
                    logging.WARNING,
                    "sqreen_otel playbook %s fired: %s %s reached %d in %gs.",
                    playbook.name,
                    playbook.group_by.text,
                    safe_text(firing.group[:128]),
                    firing.reached,
                    playbook.window,
                )
        record_firing(firing, ids)


def record_firing(firing: Firing, action_ids: list[str]) -> None:
    """``sq.playbook.<name>`` with the group key, the count and the window (no request)."""
    from sqreen_otel._recording.builders import current_target

    target = current_target(otel_context.Context())
    if target is None:
        return
    playbook = firing.playbook
    identifiers: dict[str, Any] = {}
    if playbook.group_by.is_user_key:
        identifiers[playbook.group_by.key] = firing.group
    properties: dict[str, Any] = {
        "group_by": playbook.group_by.text,
        "group": firing.group,
        "count": firing.reached,
        "window_seconds": playbook.window,
    }
    if action_ids:
        properties["action_ids"] = action_ids
    target.record(
        playbook_event_name(playbook.name), PLAYBOOK_EVENT_TYPE, identifiers, properties=(properties, 0)
    )
