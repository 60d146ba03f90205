"""Sliding-window counts and cool-downs: in memory (one evaluator per host) or in Redis (one
count for every host).

A window keeps, per group, the newest ``cap`` members (``cap`` is the playbook's threshold) with
the time each was last seen. "At least ``cap`` in the window" holds exactly when those newest
members are all inside it, so memory per group stays bounded by the threshold. Members are
event ids (counting events) or the distinct field's values (counting distinct values): adding
the same event twice (a batch retried after a failure) does not count it twice.

Operations come in batches, in order (``apply``): Redis runs a batch in one round trip, and
each count in it sees every add before it, as if run one by one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final, NamedTuple, Protocol

MAX_GROUPS: Final = 200_000  # groups kept in memory; the stalest go first beyond it


class Add(NamedTuple):
    """Add ``member`` seen ``at`` (epoch s) to ``key``; its result: the members in the window."""

    key: str
    member: str
    at: float
    window: float
    cap: int


class Count(NamedTuple):
    """The members of ``key`` within ``(at - window, at]``, adding nothing."""

    key: str
    at: float
    window: float


class Windows(Protocol):
    def apply(self, operations: Sequence[Add | Count]) -> list[int]:
        """Each operation's count, in order."""

    def claim(self, claims: Sequence[tuple[str, float, float]]) -> list[bool]:
        """For each (key, at, cool-down): True for the first claim of ``key`` in a cool-down."""

    def release(self, key: str) -> None:
        """Give a claim back (its firing could not be carried out: the next event retries)."""


class MemoryWindows:
    """One process's windows (the host's single evaluator, and ``playbooks test``)."""

    def __init__(self) -> None:
        self._groups: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        self._claims: dict[str, float] = {}

    def apply(self, operations: Sequence[Add | Count]) -> list[int]:
        return [self._add(op) if isinstance(op, Add) else self._count(op) for op in operations]

    def _add(self, op: Add) -> int:
        members = self._groups.get(op.key)
        if members is None:
            members = self._groups[op.key] = OrderedDict()
            if len(self._groups) > MAX_GROUPS:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(op.key)
        members[op.member] = max(op.at, members.pop(op.member, op.at))
        while len(members) > op.cap:
            members.popitem(last=False)
        return self._live(members, op.at, op.window)

    def _count(self, op: Count) -> int:
        members = self._groups.get(op.key)
        return 0 if members is None else self._live(members, op.at, op.window)

    @staticmethod
    def _live(members: OrderedDict[str, float], at: float, window: float) -> int:
        horizon = at - window
        while members:
            oldest = next(iter(members.values()))
            if oldest > horizon:
                break
            members.popitem(last=False)
        return len(members)

    def claim(self, claims: Sequence[tuple[str, float, float]]) -> list[bool]:
        results = []
        for key, at, cooldown in claims:
            if at < self._claims.get(key, float("-inf")):
                results.append(False)
                continue
            self._claims[key] = at + cooldown
            results.append(True)
        if len(self._claims) > MAX_GROUPS:
            latest = max((at for _, at, _ in claims), default=0.0)
            self._claims = {key: until for key, until in self._claims.items() if until > latest}
        return results

    def release(self, key: str) -> None:
        self._claims.pop(key, None)


# One window operation, atomic on the server: add (keeping a member's latest time), trim to the
# window and the cap, expire with the window, count. ARGV: member ('' to count only), at,
# horizon (at - window), cap, ttl in ms.
_WINDOW_SCRIPT: Final = """
local key, member, at, horizon = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
if member ~= '' then
  local seen = redis.call('ZSCORE', key, member)
  if not seen or tonumber(seen) < at then
    redis.call('ZADD', key, at, member)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[4]) + 1))
  redis.call('PEXPIRE', key, ARGV[5])
end
return redis.call('ZCOUNT', key, '(' .. horizon, '+inf')
"""


class RedisWindows:
    """Windows in Redis sorted sets (score: the time), shared by every host's evaluator.

    A batch is one pipeline of server-side scripts (one round trip, in order); keys expire
    with their window. Any Redis error propagates: the evaluator keeps the events queued and
    retries them.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "pb:"
        self._script = client.register_script(_WINDOW_SCRIPT)

    def _key(self, key: str) -> str:
        return self._prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def apply(self, operations: Sequence[Add | Count]) -> list[int]:
        if not operations:
            return []
        pipe = self._client.pipeline(transaction=False)
        for op in operations:
            horizon = repr(op.at - op.window)
            if isinstance(op, Add):
                ttl = int(op.window * 1000) + 1000
                args = [op.member, repr(op.at), horizon, op.cap, ttl]
            else:
                args = ["", repr(op.at), horizon, 0, 0]
            self._script(keys=[self._key(op.key)], args=args, client=pipe)
        return [int(reply) for reply in pipe.execute()]

    def claim(self, claims: Sequence[tuple[str, float, float]]) -> list[bool]:
        if not claims:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key, at, cooldown in claims:
            pipe.set(self._key("claim\x00" + key), repr(at), nx=True, px=max(1, int(cooldown * 1000)))
        return [bool(reply) for reply in pipe.execute()]

    def release(self, key: str) -> None:
        self._client.delete(self._key("claim\x00" + key))
