"""The playbook file (``SQREEN_PLAYBOOKS_FILE``, TOML): parsed and validated into ``Playbook``s.

The schema is documented in docs/playbooks.md. Every error names the file, the line, the
field and the reason (``PlaybookError``); a file is all valid or rejected as a whole, so a
reload that fails keeps the previous set.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # google-re2: linear-time matching

from sqreen_otel._display import safe_text
from sqreen_otel._durations import parse_duration
from sqreen_otel._playbooks.fields import FieldPath, parse_field
from sqreen_otel._responses.actions import MAX_DURATION_S, ActionError, safe_redirect_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_FILE_BYTES: Final = 1024 * 1024
MAX_PLAYBOOKS: Final = 256
MAX_REGEX_CHARS: Final = 512
MAX_MATCHED_CHARS: Final = 4096  # of an event's value; RE2 matches in time linear in it
MAX_WINDOW_S: Final = 7 * 86400.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_THRESHOLD = re.compile(r"\s*(\d{1,9})\s+in\s+(\S+)\s*")
RESPONSE_KINDS: Final = ("block_ip", "block_user", "redirect_ip", "redirect_user")
ACTION_KINDS: Final = (*RESPONSE_KINDS, "notify", "log")
OPERATORS: Final = ("equals", "in", "regex", "exists")


class PlaybookError(ValueError):
    """An invalid playbook file: where (file, line, field) and why."""

    def __init__(self, path: str, line: int | None, where: str, reason: str) -> None:
        self.path, self.line, self.where, self.reason = path, line, where, reason
        place = f"{path}:{line}" if line is not None else path
        super().__init__(f"{place}: {where}: {reason}" if where else f"{place}: {reason}")


@dataclass(frozen=True)
class Condition:
    field: FieldPath
    operator: str  # one of OPERATORS
    value: Any  # equals: a scalar; in: a frozenset of texts; regex: a compiled pattern; exists: bool

    def holds(self, found: object) -> bool:
        if self.operator == "exists":
            return (found is not None) is self.value
        if found is None:
            return False
        if self.operator == "equals":
            return bool(_text(found) == self.value)
        if self.operator == "in":
            return _text(found) in self.value
        return self.value.search(_text(found)[:MAX_MATCHED_CHARS]) is not None


def compile_linear(pattern: str) -> Any:
    """``pattern`` for RE2, whose matching time is linear in the text: event values are the
    attacker's, and a backtracking engine (Python's ``re``) takes exponential time on patterns
    such as ``^(\\w+\\s?)*$``. RE2 has no backreferences nor lookarounds: such a pattern is a
    ``ValueError`` naming why."""
    options = re2.Options()
    options.log_errors = False  # the reason is in our error, not on the host's stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = (
            error.args[0].decode("utf-8", "replace")
            if error.args and isinstance(error.args[0], bytes)
            else ""
        )
        raise ValueError(f"not a pattern RE2 accepts ({safe_text(reason[:120]) or 'invalid'})") from None
    except (TypeError, RecursionError):
        raise ValueError("not a pattern RE2 accepts") from None


def _text(value: object) -> str:
    """Values compare as text (``42`` and ``"42"`` alike), as user identifiers do in actions."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Response:
    kind: str  # one of ACTION_KINDS
    duration: float | None = None  # block/redirect: seconds, None = permanent
    url: str | None = None  # redirect target, or the notify webhook


@dataclass(frozen=True)
class Playbook:
    name: str
    events: frozenset[str]
    group_by: FieldPath
    threshold: int
    window: float  # seconds
    cooldown: float  # seconds
    responses: tuple[Response, ...]
    where: tuple[Condition, ...] = ()
    distinct: FieldPath | None = None
    after_events: frozenset[str] = frozenset()  # "a success after N failures": the N events
    after_threshold: int = 0
    description: str = ""
    line: int | None = field(default=None, compare=False)

    @property
    def watched(self) -> frozenset[str]:
        return self.events | self.after_events


def load_file(path: str) -> tuple[Playbook, ...]:
    """The playbooks of ``path``; ``PlaybookError`` for anything missing, unreadable or invalid."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise PlaybookError(
            path, None, "", f"cannot be read ({error.strerror or type(error).__name__})"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise PlaybookError(path, None, "", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PlaybookError(path, None, "", "not UTF-8") from None
    return parse_text(text, path)


def parse_text(text: str, path: str = "<playbooks>") -> tuple[Playbook, ...]:
    try:
        document = tomllib.loads(text)
    except RecursionError:
        raise PlaybookError(path, None, "", "not valid TOML (nested too deeply)") from None
    except tomllib.TOMLDecodeError as error:
        line = getattr(error, "lineno", None) or _line_from_message(str(error))
        raise PlaybookError(path, line, "", f"not valid TOML ({str(error).split(' (at line')[0]})") from None
    return parse_document(document, path, _Lines(text))


def _line_from_message(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


class _Lines:
    """Line numbers for the errors: where each ``[[playbooks]]`` table and its keys start
    (tomllib gives values, not positions). Lines inside multi-line strings are never headers
    nor keys."""

    _HEADER = re.compile(r"^\s*\[\[\s*playbooks\s*\]\]\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.code = _outside_multiline_strings(self.lines)
        self.starts = [
            n for n, line in enumerate(self.lines, 1) if n in self.code and self._HEADER.match(line)
        ]

    def of(self, index: int, key: str | None = None, item: int = 0) -> int | None:
        if index >= len(self.starts):
            return None
        start = self.starts[index]
        if key is None:
            return start
        end = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.lines) + 1
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=|^\s*\[\[?\s*playbooks\.{re.escape(key)}\s*\]\]?")
        found = [n for n in range(start, end) if n in self.code and pattern.match(self.lines[n - 1])]
        if not found:
            return start
        return found[item] if item < len(found) else found[0]


def _outside_multiline_strings(lines: list[str]) -> set[int]:
    """The numbers of the lines that start outside a multi-line string (\"\"\" or ''')."""
    outside: set[int] = set()
    inside: str | None = None
    for number, line in enumerate(lines, 1):
        if inside is None:
            outside.add(number)
        position = 0
        while True:
            if inside is None:
                starts = [(line.find(q, position), q) for q in ('"""', "'''") if line.find(q, position) >= 0]
                comment = line.find("#", position)
                if not starts or (0 <= comment < min(starts)[0]):
                    break
                at, inside = min(starts)
                position = at + 3
            else:
                end = line.find(inside, position)
                if end < 0:
                    break
                inside, position = None, end + 3
    return outside


def parse_document(
    document: Mapping[str, Any], path: str, lines: _Lines | None = None
) -> tuple[Playbook, ...]:
    where = lines or _Lines("")
    unknown = sorted(set(document) - {"playbooks"})
    if unknown:
        raise PlaybookError(
            path, None, _shown_key(unknown[0]), "unknown top-level key (expected [[playbooks]] tables)"
        )
    raw = document.get("playbooks", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise PlaybookError(path, None, "playbooks", "must be an array of tables ([[playbooks]])")
    if len(raw) > MAX_PLAYBOOKS:
        raise PlaybookError(path, None, "playbooks", f"more than {MAX_PLAYBOOKS} playbooks")
    playbooks: list[Playbook] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        reader = _Reader(path, index, item, where)
        playbook = reader.playbook()
        if playbook.name in names:
            raise PlaybookError(
                path, where.of(index, "name"), f"playbooks[{index}].name", "a second playbook of this name"
            )
        names.add(playbook.name)
        playbooks.append(playbook)
    return tuple(playbooks)


_KEYS: Final = frozenset(
    {
        "name",
        "description",
        "events",
        "where",
        "group_by",
        "threshold",
        "window",
        "distinct",
        "after",
        "cooldown",
        "actions",
        "enabled",
    }
)


class _Reader:
    """One ``[[playbooks]]`` table."""

    def __init__(self, path: str, index: int, raw: Mapping[str, Any], lines: _Lines) -> None:
        self.path, self.index, self.raw, self.lines = path, index, raw, lines

    def fail(self, key: str, reason: str, sub: str = "") -> PlaybookError:
        name = self.raw.get("name")
        label = (
            f"playbook {name!r}"
            if isinstance(name, str) and _NAME.fullmatch(name)
            else f"playbooks[{self.index}]"
        )
        item = re.match(r"\[(\d+)\]", sub)  # the n-th [[playbooks.<key>]] table
        line = self.lines.of(self.index, key, int(item.group(1)) if item else 0)
        return PlaybookError(self.path, line, f"{label}.{key}{sub}", reason)

    def playbook(self) -> Playbook:
        unknown = sorted(set(self.raw) - _KEYS)
        if unknown:
            raise self.fail(
                _shown_key(unknown[0]), f"unknown key (expected one of {', '.join(sorted(_KEYS))})"
            )
        name = self.raw.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise self.fail("name", "required: 1 to 64 letters, digits, '_', '.', '-'")
        description = self.raw.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", "must be a string")
        events = self._names("events", self.raw.get("events"))
        threshold, window = self._threshold()
        cooldown = self._duration("cooldown", default=window)
        distinct = self._field("distinct") if "distinct" in self.raw else None
        group_by = self._field("group_by")
        after_events, after_threshold = self._after()
        return Playbook(
            name=name,
            description=description,
            events=events,
            where=self._conditions(),
            group_by=group_by,
            threshold=threshold,
            window=window,
            cooldown=cooldown,
            distinct=distinct,
            after_events=after_events,
            after_threshold=after_threshold,
            responses=self._responses(group_by),
            line=self.lines.of(self.index),
        )

    def _names(self, key: str, value: object) -> frozenset[str]:
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item for item in value)
        ):
            raise self.fail(key, "required: an event name or a non-empty list of event names")
        if any(len(item) > 256 for item in value):
            raise self.fail(key, "an event name is longer than 256 characters")
        return frozenset(value)

    def _field(self, key: str, value: object = None, sub: str = "") -> FieldPath:
        value = self.raw.get(key) if value is None else value
        if not isinstance(value, str):
            raise self.fail(key, "required: a field such as client_ip, user.email or properties.<name>", sub)
        try:
            return parse_field(value)
        except ValueError as error:
            raise self.fail(key, str(error), sub) from None

    def _threshold(self) -> tuple[int, float]:
        value = self.raw.get("threshold")
        window_text = self.raw.get("window")
        window_key = "window"
        if isinstance(value, str):
            match = _THRESHOLD.fullmatch(value)
            if match is None:
                raise self.fail("threshold", 'a count, or "COUNT in WINDOW" such as "10 in 5m"')
            if window_text is not None:
                raise self.fail("window", 'given twice (the threshold already says "in ...")')
            value, window_text, window_key = int(match.group(1)), match.group(2), "threshold"
        if value is None and "after" in self.raw:
            value = 1  # "a success after 5 failures": the success itself is the one event
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise self.fail("threshold", "required: a count from 1 to 1000000")
        if window_text is None:
            raise self.fail("window", 'required: a duration such as "5m"')
        window = self._duration(window_key, value=window_text)
        if window <= 0:
            raise self.fail(window_key, "the window must be longer than 0s")
        return value, window

    def _duration(
        self, key: str, *, default: float | None = None, value: object = None, sub: str = ""
    ) -> float:
        value = self.raw.get(key) if value is None else value
        if value is None:
            if default is None:
                raise self.fail(key, "required: a duration such as 5m", sub)
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, "a duration such as 30s, 15m, 2h or 7d", sub)
        try:
            seconds = float(value) if not isinstance(value, str) else parse_duration(value)
        except ValueError:
            raise self.fail(key, "a duration such as 30s, 15m, 2h or 7d", sub) from None
        limit = MAX_WINDOW_S if key in ("window", "cooldown", "threshold") else MAX_DURATION_S
        if not math.isfinite(seconds) or not 0 <= seconds <= limit:
            raise self.fail(key, f"must be between 0s and {int(limit)}s", sub)
        return seconds

    def _after(self) -> tuple[frozenset[str], int]:
        after = self.raw.get("after")
        if after is None:
            return frozenset(), 0
        if not isinstance(after, dict) or set(after) - {"events", "threshold"}:
            raise self.fail(
                "after", "a table with events and threshold: after = { events = [...], threshold = 5 }"
            )
        count = after.get("threshold")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1_000_000:
            raise self.fail("after", "threshold: a count from 1 to 1000000", ".threshold")
        return self._names("after", after.get("events")), count

    def _conditions(self) -> tuple[Condition, ...]:
        raw = self.raw.get("where", [])
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise self.fail("where", "conditions: [[playbooks.where]] tables with a field and one operator")
        conditions = []
        for number, item in enumerate(raw):
            sub = f"[{number}]"
            operators = [key for key in item if key in OPERATORS]
            unknown = sorted(set(item) - {"field", *OPERATORS})
            if unknown:
                raise self.fail(
                    "where",
                    f"unknown key {_shown_key(unknown[0])!r} (field, and one of {', '.join(OPERATORS)})",
                    sub,
                )
            if len(operators) != 1:
                raise self.fail("where", f"exactly one of {', '.join(OPERATORS)}", sub)
            path = self._field("where", item.get("field"), sub)
            operator = operators[0]
            conditions.append(Condition(path, operator, self._operand(operator, item[operator], sub)))
        return tuple(conditions)

    def _operand(self, operator: str, value: object, sub: str) -> Any:
        if operator == "exists":
            if not isinstance(value, bool):
                raise self.fail("where", "exists: true or false", sub)
            return value
        if operator == "equals":
            if not isinstance(value, (str, int, float, bool)):
                raise self.fail("where", "equals: a string, number or boolean", sub)
            return _text(value)
        if operator == "in":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(item, (str, int, float, bool)) for item in value)
            ):
                raise self.fail("where", "in: a non-empty list of strings, numbers or booleans", sub)
            return frozenset(_text(item) for item in value)
        if not isinstance(value, str) or len(value) > MAX_REGEX_CHARS:
            raise self.fail("where", f"regex: a pattern of at most {MAX_REGEX_CHARS} characters", sub)
        try:
            return compile_linear(value)
        except ValueError as error:
            raise self.fail("where", f"regex: {error}", sub) from None

    def _responses(self, group_by: FieldPath) -> tuple[Response, ...]:
        raw = self.raw.get("actions")
        if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
            raise self.fail("actions", "required: [[playbooks.actions]] tables, each with a type")
        responses = []
        for number, item in enumerate(raw):
            sub = f"[{number}]"
            kind = item.get("type")
            if kind not in ACTION_KINDS:
                raise self.fail("actions", f"type: one of {', '.join(ACTION_KINDS)}", sub)
            allowed = {"type"} | ({"duration"} if kind in RESPONSE_KINDS else set())
            allowed |= {"url"} if kind.startswith("redirect_") or kind == "notify" else set()
            unknown = sorted(set(item) - allowed)
            if unknown:
                raise self.fail(
                    "actions",
                    f"{kind} takes no {_shown_key(unknown[0])!r} (only {', '.join(sorted(allowed))})",
                    sub,
                )
            duration = None
            if "duration" in item:
                duration = self._duration("actions", value=item["duration"], sub=f"{sub}.duration")
            url = None
            if "url" in allowed:
                try:
                    url = safe_redirect_url(item.get("url"))
                except ActionError as error:
                    raise self.fail("actions", f"url: {error}", sub) from None
            responses.append(Response(kind, duration, url))
        return tuple(responses)


def _shown_key(key: str) -> str:
    """A key of the file as an error shows it: escaped, at most 64 characters."""
    return safe_text(key[:64]) + ("..." if len(key) > 64 else "")


def describe(playbooks: Sequence[Playbook]) -> list[str]:
    """One line per playbook, for ``playbooks check``."""
    lines = []
    for playbook in playbooks:
        counted = f"distinct {playbook.distinct.text}" if playbook.distinct else "events"
        after = (
            f" after {playbook.after_threshold} of {', '.join(sorted(playbook.after_events))}"
            if playbook.after_events
            else ""
        )
        actions = ", ".join(response.kind for response in playbook.responses)
        lines.append(
            f"{playbook.name}: {', '.join(sorted(playbook.events))}{after} by {playbook.group_by.text}, "
            f"{playbook.threshold} {counted} in {_span(playbook.window)} -> {actions} "
            f"(cool-down {_span(playbook.cooldown)})"
        )
    return lines


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
