"""Playbook evaluation: events in, firings out. No I/O but the windows' (memory or Redis).

The same engine serves the live evaluator and ``sqreen-otel playbooks test``: time is the
events' own, so a replay of recorded events fires the same playbooks for the same keys as the
live run did. Conditions (``where``) filter the trigger events; ``after`` events only count.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqreen_otel._playbooks.fields import Observed
from sqreen_otel._playbooks.schema import Playbook
from sqreen_otel._playbooks.windows import Add, Count, Windows

MAX_GROUP_CHARS = 512  # a group value longer than this is cut (it is only a key)


class Firing(NamedTuple):
    playbook: Playbook
    group: str  # the group-by value, as text
    reached: int  # what crossed the threshold (events, or distinct values)
    at: float  # the crossing event's time (epoch s)
    event: Observed  # the crossing event


def group_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return (value if isinstance(value, str) else str(value))[:MAX_GROUP_CHARS]


class Engine:
    def __init__(self, playbooks: Sequence[Playbook], windows: Windows) -> None:
        self.playbooks = tuple(playbooks)
        self.windows = windows
        self._roles: dict[str, list[tuple[Playbook, bool]]] = {}  # name -> (playbook, is_trigger)
        for playbook in self.playbooks:
            for name in playbook.after_events:
                self._roles.setdefault(name, []).append((playbook, False))
            for name in playbook.events:
                self._roles.setdefault(name, []).append((playbook, True))
        self._serial = itertools.count()
        self._unkeyed = secrets.token_hex(8)  # events without an id: members unique to this engine

    def watches(self, name: str) -> bool:
        return name in self._roles

    def observe(self, event: Observed) -> list[Firing]:
        return self.observe_all([event])

    def observe_all(self, events: Iterable[Observed]) -> list[Firing]:
        """The firings of ``events`` (in order), as if observed one by one; the windows see
        the whole batch at once (one Redis round trip for the counts, one for the claims)."""
        operations: list[Add | Count] = []
        # (the Add's index, the after Count's index, playbook, group, event, the event's identity)
        checks: list[tuple[int, int | None, Playbook, str, Observed, str]] = []
        for event in events:
            for playbook, is_trigger in self._roles.get(event.name, ()):
                group = playbook.group_by.get(event)
                if group is None or group == "" or isinstance(group, (dict, list)):
                    continue  # nothing to group by: the event does not count
                text = group_text(group)
                key = f"{playbook.name}\x00{text}"
                identity = member = event.key or f"#{self._unkeyed}:{next(self._serial)}"
                if not is_trigger:
                    operations.append(
                        Add(key + "\x00after", member, event.time, playbook.window, playbook.after_threshold)
                    )
                    continue
                if not all(condition.holds(condition.field.get(event)) for condition in playbook.where):
                    continue
                if playbook.distinct is not None:
                    value = playbook.distinct.get(event)
                    if value is None or isinstance(value, (dict, list)):
                        continue
                    member = group_text(value)
                after = None
                if playbook.after_events:
                    after = len(operations)
                    operations.append(Count(key + "\x00after", event.time, playbook.window))
                checks.append((len(operations), after, playbook, text, event, identity))
                operations.append(Add(key, member, event.time, playbook.window, playbook.threshold))
        if not checks:
            if operations:
                self.windows.apply(operations)
            return []
        counts = self.windows.apply(operations)
        crossed = [
            (counts[add], playbook, text, event, identity)
            for add, after, playbook, text, event, identity in checks
            if counts[add] >= playbook.threshold
            and (after is None or counts[after] >= playbook.after_threshold)
        ]
        claimed = self.windows.claim(
            [
                (f"{playbook.name}\x00{text}", event.time, playbook.cooldown, identity)
                for _, playbook, text, event, identity in crossed
            ]
        )
        return [
            Firing(playbook, text, count, event.time, event)
            for (count, playbook, text, event, _), first in zip(crossed, claimed, strict=True)
            if first  # fired already in this cool-down: one attacker, one firing
        ]

    def unclaim(self, firing: Firing) -> None:
        """The firing could not be carried out: let the next crossing fire it again."""
        self.windows.release(f"{firing.playbook.name}\x00{firing.group}")
