"""Sliding-window counts and cool-downs: in memory (one evaluator per host) or in Redis (one
count for every host).

A window keeps, per group, the newest ``cap`` members (``cap`` is the playbook's threshold),
ordered by the time each was last seen, and counts those within ``(at - window, at]`` of the
event being counted: an event that reaches the store late counts with the events of its own
window, as in a replay sorted by time. Memory per group stays bounded by the threshold. Members are
event ids (counting events) or the distinct field's values (counting distinct values): adding
the same event twice (a batch retried after a failure) does not count it twice.

Operations come in batches, in order (``apply``): Redis runs a batch in one round trip, and
each count in it sees every add before it, as if run one by one.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final, NamedTuple, Protocol

MAX_GROUPS: Final = 200_000  # groups kept in memory; the stalest go first beyond it


class Add(NamedTuple):
    """Add ``member`` seen ``at`` (epoch s) to ``key``; its result: the members of the fullest
    window of length ``window`` that holds ``at`` (``Count``'s at ``at``, unless later events
    were seen first)."""

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
        """Each operation's count, in order: the members seen within ``(at - window, at]``."""

    def claim(self, claims: Sequence[tuple[str, float, float, str]]) -> list[bool]:
        """For each (key, at, cool-down, token): True for the first claim of ``key`` in a
        cool-down, and again for a claim with the same token (the same crossing, retried)."""

    def release(self, key: str) -> None:
        """Give a claim back (its firing could not be carried out: the next event retries)."""


_LAST = "\U0010ffff"  # sorts after any member: (t, _LAST) bounds every member seen at t


class _Group:
    """A group's members, ordered by the time each was last seen (events may arrive late)."""

    __slots__ = ("members", "times")

    def __init__(self) -> None:
        self.times: list[tuple[float, str]] = []  # sorted
        self.members: dict[str, float] = {}

    def add(self, member: str, at: float, cap: int) -> None:
        seen = self.members.get(member)
        if seen is not None:
            if seen >= at:
                return  # seen as late or later already: a member counts at its latest time
            del self.times[bisect.bisect_left(self.times, (seen, member))]
        bisect.insort(self.times, (at, member))
        self.members[member] = at
        while len(self.times) > cap:  # the newest ``cap`` decide "at least cap": the oldest go
            _, oldest = self.times.pop(0)
            del self.members[oldest]

    def count(self, at: float, window: float) -> int:
        """The members within ``(at - window, at]``."""
        newer = bisect.bisect_right(self.times, (at, _LAST))
        return newer - bisect.bisect_right(self.times, (at - window, _LAST))

    def crossing(self, at: float, window: float) -> int:
        """The fullest window that holds a member seen at ``at``: those ending at ``at`` or at a
        later member less than ``window`` after it (an event stored late completes a window
        that ends at a newer event). In time order, just ``count(at, window)``."""
        start = bisect.bisect_left(self.times, (at, ""))
        end = bisect.bisect_left(self.times, (at + window, ""))
        return max((self.count(t, window) for t, _ in self.times[start:end]), default=0)


class MemoryWindows:
    """One process's windows (the host's single evaluator, and ``playbooks test``)."""

    def __init__(self) -> None:
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._claims: dict[str, tuple[float, str]] = {}

    def apply(self, operations: Sequence[Add | Count]) -> list[int]:
        return [self._add(op) if isinstance(op, Add) else self._count(op) for op in operations]

    def _add(self, op: Add) -> int:
        group = self._groups.get(op.key)
        if group is None:
            group = self._groups[op.key] = _Group()
            if len(self._groups) > MAX_GROUPS:
                self._groups.popitem(last=False)  # the group seen least recently
        else:
            self._groups.move_to_end(op.key)
        group.add(op.member, op.at, op.cap)
        return group.crossing(op.at, op.window)

    def _count(self, op: Count) -> int:
        group = self._groups.get(op.key)
        return 0 if group is None else group.count(op.at, op.window)

    def claim(self, claims: Sequence[tuple[str, float, float, str]]) -> list[bool]:
        results = []
        for key, at, cooldown, token in claims:
            until, holder = self._claims.get(key, (float("-inf"), ""))
            if at < until and token != holder:
                results.append(False)
                continue
            if token != holder or at >= until:
                self._claims[key] = (at + cooldown, token)
            results.append(True)
        if len(self._claims) > MAX_GROUPS:
            latest = max((at for _, at, _, _ in claims), default=0.0)
            self._claims = {key: held for key, held in self._claims.items() if held[0] > latest}
        return results

    def release(self, key: str) -> None:
        self._claims.pop(key, None)


# One window operation, atomic on the server, as ``MemoryWindows`` does it: add (keeping a
# member's latest time), trim to the cap, expire with the window, and answer the fullest window
# holding ``at`` (a count: the window ending at ``at``). ARGV: member ('' to count only), at,
# window, cap, ttl in ms. Scores are compared as Lua numbers (doubles), as Redis stores them.
_WINDOW_SCRIPT: Final = """
local key, member, at, window = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function count(t)
  return redis.call('ZCOUNT', key, '(' .. (t - window), t)
end
if member == '' then
  return count(at)
end
local seen = redis.call('ZSCORE', key, member)
if not seen or tonumber(seen) < at then
  redis.call('ZADD', key, at, member)
end
redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[4]) + 1))
redis.call('PEXPIRE', key, ARGV[5])
local best = 0
local later = redis.call('ZRANGEBYSCORE', key, at, '(' .. (at + window), 'WITHSCORES')
for i = 2, #later, 2 do
  local c = count(tonumber(later[i]))
  if c > best then best = c end
end
return best
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
            if isinstance(op, Add):
                ttl = int(op.window * 1000) + 1000
                args = [op.member, repr(op.at), repr(op.window), op.cap, ttl]
            else:
                args = ["", repr(op.at), repr(op.window), 0, 0]
            self._script(keys=[self._key(op.key)], args=args, client=pipe)
        return [int(reply) for reply in pipe.execute()]

    def claim(self, claims: Sequence[tuple[str, float, float, str]]) -> list[bool]:
        if not claims:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key, _, cooldown, token in claims:
            name = self._key("claim\x00" + key)
            pipe.set(name, token, nx=True, px=max(1, int(cooldown * 1000)))
            pipe.get(name)  # a claim held with our token: this crossing, retried after a failure
        replies = pipe.execute()
        tokens = [token.encode("utf-8", "surrogatepass") for _, _, _, token in claims]
        return [bool(replies[2 * n]) or replies[2 * n + 1] == tokens[n] for n in range(len(claims))]

    def release(self, key: str) -> None:
        self._client.delete(self._key("claim\x00" + key))
