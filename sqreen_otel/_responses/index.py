"""The active actions, indexed for the request path.

* IPs: per kind (block, redirect) and address family, the CIDRs flattened into sorted,
  disjoint ranges, each owned by the most specific CIDR covering it (CIDRs nest or are
  disjoint, never overlap partially): a lookup is one ``bisect`` in C, O(log n) whatever the
  number or the prefix lengths of the CIDRs. The longest prefix wins within a kind (the longest
  still active one, between two rebuilds); a block beats a redirect (Sqreen's order: block
  first).
* Users: each action's user (a set of identifier texts) is filed under its rarest identifier
  (the one fewest users share: never under an ``account`` that thousands of users have); a
  request's identifiers find the candidates in O(number of identifiers), and a candidate
  matches when all of its identifiers are among the request's. Block before redirect.
* An index is immutable, built for a moment: ``valid_until`` is the earliest expiry among its
  actions, when the registry builds the next one (and a match re-checks expiry, so an action
  never outlives its end even between two refreshes).
"""

from __future__ import annotations

import bisect
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqreen_otel._responses.actions import Action, IPNetwork, UserKey, identifier_text
from sqreen_otel._scrubbing.pseudonym import pseudonym

_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96
_V4_MAPPED_MASK = ((1 << 96) - 1) << 32


def ip_value(address: str) -> tuple[int, int] | None:
    """(family 4 or 6, the address as an integer), an IPv4-mapped IPv6 address as IPv4; None if
    ``address`` is not an IP address."""
    try:
        if ":" in address:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0]), "big")
            if value & _V4_MAPPED_MASK == _V4_MAPPED:
                return 4, value & 0xFFFFFFFF
            return 6, value
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, ValueError):
        return None


def _ends_after(action: Action, other: Action) -> bool:
    if action.expires_at is None:
        return other.expires_at is not None
    return other.expires_at is not None and action.expires_at > other.expires_at


class CidrTable:
    """Longest-prefix match of addresses of one family against CIDRs owned by actions.

    Each range points at the most specific CIDR covering it, and each CIDR at the next wider
    one covering it (its parent): when the most specific action has expired (between two
    rebuilds), the lookup falls back to the next covering active one. A chain is at most one
    CIDR per prefix length (duplicates of a CIDR are one node), so a lookup stays O(log n).
    """

    __slots__ = ("_actions", "_ends", "_owners", "_parents", "_starts")

    def __init__(self, entries: Iterable[tuple[IPNetwork, Action]]) -> None:
        # One node per distinct CIDR: the action that stays active longest (it is active whenever
        # any of its duplicates is), so that a chain holds at most one node per prefix length.
        best: dict[IPNetwork, tuple[int, Action]] = {}
        for index, (network, action) in enumerate(entries):
            kept = best.get(network)
            if kept is None or _ends_after(action, kept[1]):
                best[network] = (index, action)
        intervals = sorted(
            (
                (int(network.network_address), int(network.broadcast_address), index, action)
                for network, (index, action) in best.items()
            ),
            key=lambda item: (item[0], -item[1], item[2]),  # outer first, then inner
        )
        starts: list[int] = []
        ends: list[int] = []
        owners: list[int] = []  # per range: the node of its most specific CIDR
        actions: list[Action] = []  # per node (one per CIDR): its action
        parents: list[int] = []  # per node: the node of the next wider CIDR covering it, or -1

        def emit(start: int, end: int, owner: int) -> None:
            if start <= end:
                starts.append(start)
                ends.append(end)
                owners.append(owner)

        stack: list[tuple[int, int]] = []  # (end, node) of the CIDRs covering ``position``
        position = 0
        for start, end, _, action in intervals:
            while stack and stack[-1][0] < start:
                top_end, top = stack.pop()
                emit(position, top_end, top)
                position = max(position, top_end + 1)
            if stack:
                emit(position, start - 1, stack[-1][1])
            parents.append(stack[-1][1] if stack else -1)
            actions.append(action)
            stack.append((end, len(actions) - 1))
            position = start
        while stack:
            top_end, top = stack.pop()
            emit(position, top_end, top)
            position = max(position, top_end + 1)
        self._starts, self._ends, self._owners = starts, ends, owners
        self._actions, self._parents = actions, parents

    def __len__(self) -> int:
        return len(self._starts)

    def lookup(self, value: int, now: float | None = None) -> Action | None:
        """The action of the most specific CIDR covering ``value``; with ``now``, the most
        specific one still active then."""
        index = bisect.bisect_right(self._starts, value) - 1
        if index < 0 or value > self._ends[index]:
            return None
        node = self._owners[index]
        while node >= 0:
            action = self._actions[node]
            if now is None or action.active(now):
                return action
            node = self._parents[node]
        return None


@dataclass(frozen=True)
class Match:
    action: Action
    matched: str  # the client IP, or the user identifiers that matched (for the event)


class ActionIndex:
    """The active actions at one moment (see the module docstring)."""

    def __init__(self, actions: Sequence[Action], now: float) -> None:
        active = [action for action in actions if action.active(now)]
        self.actions = tuple(active)
        expiries = [action.expires_at for action in active if action.expires_at is not None]
        self.valid_until = min(expiries) if expiries else float("inf")
        self._ip: dict[int, tuple[CidrTable, ...]] = {}  # family -> (block table, redirect table)
        for family in (4, 6):
            tables = []
            for blocks in (True, False):
                entries = [
                    (network, action)
                    for action in active
                    if action.on_ip and action.blocks is blocks
                    for network in action.networks
                    if network.version == family
                ]
                if entries:
                    tables.append(CidrTable(entries))
            if tables:
                self._ip[family] = tuple(tables)
        self._users: dict[bool, dict[tuple[str, str], list[tuple[UserKey, Action]]]] = {True: {}, False: {}}
        users = [(user, action) for action in active if not action.on_ip for user in action.users]
        counts = Counter(pair for user, _ in users for pair in user)
        for user, action in users:  # filed under its rarest identifier: small buckets to scan
            rarest = min(user, key=lambda pair: (counts[pair], pair))
            self._users[action.blocks].setdefault(rarest, []).append((user, action))
        self.has_ip_actions = bool(self._ip)
        self.has_user_actions = any(self._users.values())

    def match_ip(self, address: str, now: float) -> Match | None:
        """The action for a client IP: a block if any, else a redirect (longest prefix in each)."""
        if not self._ip:
            return None
        parsed = ip_value(address)
        if parsed is None:
            return None
        family, value = parsed
        for table in self._ip.get(family, ()):  # blocks first, then redirects
            action = table.lookup(value, now)
            if action is not None:
                return Match(action, address)
        return None

    def match_user(
        self, identifiers: Mapping[str, object], now: float, key: bytes | None = None
    ) -> Match | None:
        """The action for a user's identifiers (their texts, and their keyed pseudonyms)."""
        if not self.has_user_actions or not identifiers:
            return None
        pairs = {(name, identifier_text(value)) for name, value in identifiers.items()}
        if key is not None:
            pairs.update((name, pseudonym(key, value)) for name, value in identifiers.items())
        for blocks in (True, False):
            table = self._users[blocks]
            for pair in pairs:
                for user, action in table.get(pair, ()):
                    if user <= pairs and action.active(now):
                        return Match(action, ",".join(sorted(name for name, _ in user)))
        return None


EMPTY = ActionIndex((), 0.0)
