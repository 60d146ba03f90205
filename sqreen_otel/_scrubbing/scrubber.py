"""PII scrubbing of everything our pipeline ships, on copies, in the export thread.

* **Key rule**: an attribute, property, identifier, trait, query parameter or captured header
  whose key matches has its whole value redacted, recursively for nested values. Keys are
  matched case-insensitively and after splitting camelCase (``XAuthKey`` is ``x_auth_key``);
  long words match inside longer keys (``user_password``), short ones only as a whole word
  (``pin`` matches ``card_pin``, not ``shipping``). The same rule applies to ``key=value`` and
  ``key: value`` pairs found inside text (JSON, reprs, header dumps, query strings).
* **Value rule**: only the matching part of a string is redacted: card numbers (Luhn-checked,
  also when glued to an expiry date, a CVV or another number), bearer and basic credentials,
  JWTs, private-key blocks, well-known API token formats, credentials in URLs, and the values
  of sensitive pairs. Numbers are checked too (a card number given as an ``int``).
  ``SQREEN_STRIP_SENSITIVE_VALUE_REGEXP`` replaces these built-in patterns.
* **URLs** (``url.query``, ``http.target``, ``url.full``, ``http.url``): parameters are scrubbed
  one by one after URL-decoding, names included; the semantic conventions' signature
  parameters are always masked; credentials in the authority are masked; the mask is
  URL-encoded so the URL stays parseable.
* **Cost**: every built-in pattern runs in time linear in its input (no nested quantifiers;
  each scan starts where the previous one ended), and a value longer than
  ``MAX_SCRUBBED_CHARS`` is redacted whole rather than scanned (fail closed).

Nothing here changes an attribute into a type OTLP rejects: a redacted value is a string, or a
tuple of strings for an array.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqreen_otel import _schema
from sqreen_otel._config import Config
from sqreen_otel._http.request_context import (
    MAX_PARAMETERS,
    MAX_QUERY_CHARS,
    RequestContext,
    RequestFields,
    parse_parameters,
)
from sqreen_otel._recording.validate import valid_text
from sqreen_otel._scrubbing.pseudonym import pseudonym
from sqreen_otel._sdk_bridge import readable
from sqreen_otel._stats import stats

MASK = _schema.REDACTED
URL_MASK = urllib.parse.quote(MASK)
MAX_SCRUBBED_CHARS = 16384  # the per-value budget: longer values are redacted whole

# The key rule, matched against the normalised key (lower case, camelCase split, "-" and
# spaces as "_"). Sqreen Go's key regex, Sentry's denylist and Datadog's obfuscation key regex,
# plus payment and one-time secrets; short words only as whole words (see docs/scrubbing.md).
DEFAULT_KEY_REGEXP = (
    r"passw(?:or)?d|pass_?phrase|passcode|pwd|secret|authori[sz]ation|authentication|"
    r"(?:api|access|auth|private|public|secret|signing|client|consumer|app|master|encryption|session|ssh)_?key|"
    r"token|bearer|jwt|cookie|credential|csrf|xsrf|signature|signed|verifier|"
    r"sess(?:ion)?_?id|phpsessid|jsessionid|connect_sid|asp_net_?sessionid|symfony|"
    r"card_?(?:number|num|no|code)|credit_?card|cvv|cvc|security_?code|social_?security|"
    r"(?:^|[^a-z0-9])(?:pass\d*|pw|auth|pin\d*|pin_?code|otp|totp|hotp|mfa_?code|ssn|sid|session|pan"
    r"|cc_?(?:number|num|no))(?:$|[^a-z0-9])"
)

# Query parameters the semantic conventions redact (case-sensitive), value only.
SIGNATURE_PARAMETERS = frozenset(
    {
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
    }
)

# The built-in value patterns. Each is linear: a match can only start where its lookbehind
# allows (not inside the run it would scan), and no quantified group can match the same text
# two ways. ``card`` and ``pair`` only find candidates, decided in Python (``pair`` fires at a
# separator; its key is read backwards from there, at most ``_MAX_KEY_CHARS``).
_BUILTIN_VALUE_PATTERNS = {
    "card": r"(?<!\d)\d(?:[ -]?\d){12,}",
    "private_key": (
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*)"
    ),
    "jwt": r"(?<![\w-])ey[I-L][\w-]*\.ey[I-L][\w-]*(?:\.[\w.+/=-]*)?",
    "bearer": r"(?<![\w-])(?i:bearer|basic)[ \t]{1,16}[A-Za-z0-9\-._~+/]{8,}=*",
    "token": (
        r"(?<![\w-])(?:gh[oprsu]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}|glpat-[\w-]{20,255}"
        r"|xox[abposr]-[A-Za-z0-9-]{10,255}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,255}"
        r"|sk-(?:proj-|ant-[a-z0-9]{2,8}-)?[A-Za-z0-9_-]{32,255}|AIza[\w-]{35}|npm_[A-Za-z0-9]{36}"
        r"|(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})(?![\w-])"
    ),
    "url_credentials": r"(?<=://)[^/\s:@]{0,256}:[^/\s@]{1,256}(?=@)",
    "pair": r"(?<=[\w.\-\]\"'])[\"']?[ \t]{0,16}(?P<pair_sep>=>|[=:])[ \t]{0,16}",
    # ('key', 'value') in a repr of pairs (MultiDict, Headers, dict.items(), a list of tuples)
    "pair_tuple": r"(?<=[\"'])[ \t]{0,16},[ \t]{0,16}(?=[bBuU]?[\"'])",
}
_DIGITS = "0123456789"


# A necessary condition for any built-in pattern to match, in a few C-speed scans: most values
# (names, amounts, codes, words) meet none and are returned as they are. Each check is the
# cheap mark of one or more patterns (see _may_match for each pattern's own).
_RARE_CHARACTERS = re.compile(r"[=:'\"]").search  # pair, pair_tuple, url_credentials
_DIGIT_RUN = re.compile(r"[0-9][0-9 -]{12}|[^\x00-\x7f]").search  # card (non-ASCII: other digits)
_TOKEN_PREFIXES = re.compile(
    r"gh[oprsu]_|github_pat_|glpat-|xox|[sr]k_|sk-|AIza|npm_|A3T|AKIA|ASIA|ABIA|ACCA"
)


def suspect(text: str) -> bool:
    """False when no built-in value pattern can match anywhere in ``text``."""
    if _RARE_CHARACTERS(text) is not None or "ey" in text or "-----" in text:
        return True
    if len(text) < 13:
        return False
    if _DIGIT_RUN(text) is not None:
        return True
    return len(text) >= 14 and (
        "earer" in text
        or "EARER" in text
        or "asic" in text
        or "ASIC" in text
        or (("_" in text or "-" in text or "A" in text) and _TOKEN_PREFIXES.search(text) is not None)
    )


def _may_match(kind: str, text: str) -> bool:
    """A cheap necessary condition for ``kind`` to match anywhere in ``text`` (C-speed checks)."""
    if kind == "card":
        return sum(map(text.count, _DIGITS)) >= 13 or not text.isascii()
    if kind == "private_key":
        return "-----BEGIN" in text
    if kind == "jwt":
        return "ey" in text
    if kind == "bearer":
        return any(word in text for word in ("earer", "EARER", "asic", "ASIC"))
    if kind == "token":
        return _TOKEN_PREFIXES.search(text) is not None
    if kind == "url_credentials":
        return "://" in text
    if kind == "pair_tuple":
        return "(" in text or "[" in text
    return "=" in text or ":" in text  # pair


@functools.lru_cache(maxsize=128)
def _value_regex(kinds: tuple[str, ...]) -> re.Pattern[str]:
    """The alternation of the built-in patterns named (in their fixed order)."""
    return re.compile("|".join(f"(?P<{kind}>{_BUILTIN_VALUE_PATTERNS[kind]})" for kind in kinds), re.DOTALL)


# Where the value of a sensitive pair ends: ``key=value`` at the usual delimiters, a JSON
# ``"key": value`` at the next member, a header or log ``Key: value`` at the end of the line.
_PAIR_VALUE_END = {
    "=": re.compile(r"[\s&;,)}\]\"']"),
    "=>": re.compile(r"[\s&;,)}\]\"']"),
    '":': re.compile(r"[\r\n,}\]]"),
    ":": re.compile(r"[\r\n]"),
    ",": re.compile(r"[)\],]"),
}
_MAX_PAIR_VALUE = 4096
_MAX_KEY_CHARS = 128


# Keys read backwards from their separator: a quoted one to its opening quote (spaces and all:
# ``"Security Code"``), else a run of key characters (``user[password]``, ``api.key``).
_QUOTED_KEY_BACKWARDS = re.compile(rf"([\"'])([^\"'\r\n]{{1,{_MAX_KEY_CHARS}}})\1")
_KEY_BACKWARDS = re.compile(rf"[\w.\-\[\]]{{1,{_MAX_KEY_CHARS}}}")
_TUPLE_OPENING = re.compile(r"[bBuU]?[ \t]{0,16}[(\[]")


def _key_before(backwards: str, end: int, *, tuple_only: bool = False) -> str | None:
    """The ``key`` of a pair whose separator (or the key's closing quote) is at ``end``;
    ``tuple_only``: only a quoted key opening a ``(key, value)`` tuple.

    ``backwards`` is the text reversed, so the key is read with anchored matches (C speed).
    """
    at = len(backwards) - end
    quoted = _QUOTED_KEY_BACKWARDS.match(backwards, at)
    if quoted is not None:
        if tuple_only and _TUPLE_OPENING.match(backwards, quoted.end()) is None:
            return None
        return quoted.group(2)[::-1]
    if tuple_only:
        return None
    match = _KEY_BACKWARDS.match(backwards, at)
    if match is None:
        return None
    key = match.group()[::-1].lstrip("-.")  # a command-line flag: --password=...
    return key if key and (key[0].isalpha() or key[0] == "_") else None


_CARD_IIN_FIRST_DIGITS = frozenset("23456")  # the major card networks' ranges
_MAX_CARD_RUN_DIGITS = 64  # a longer run of digits is redacted whole
_MAX_CARD_GROUP_DIGITS = 32  # so is one with a longer group of digits without separators
_DIGIT_GROUP = re.compile(r"\d+")
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

_CACHED_TEXT_LENGTH = 256  # longer texts are rarely repeated: not worth a cache slot
_IP_LIKE = re.compile(r"[0-9a-fA-F.:\[\]]{2,64}").fullmatch  # an address: nothing to scrub
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER"}
)
_MAX_PLANS = 8192
# What scrub_attributes does with an attribute (see Scrubber._plan).
_KEEP, _REDACT, _URL, _VALUE = object(), object(), object(), object()
_PROPERTIES, _IDENTIFIERS = object(), object()


class _Plan(NamedTuple):
    """What is done with one attribute key (see ``Scrubber._plan``)."""

    action: object  # _KEEP, _REDACT, _URL or _VALUE
    key: str  # the key it is shipped under (its data part scrubbed)
    group: object | None  # _PROPERTIES, _IDENTIFIERS, or None (other attributes)
    short: str  # the key without the group's prefix


# Our own attributes whose values are ours (constants and counts), never data.
_BOOKKEEPING = frozenset(
    {
        _schema.EVENT_TYPE,
        _schema.EVENT_ID,  # our random id: never data
        _schema.USER_SOURCE,
        _schema.AUTH_SUCCESS,
        _schema.DROPPED_PROPERTIES,
        _schema.CARRIER_REASON,
        _schema.CLIENT_IP_SOURCE,
    }
)
_URL_KEYS = frozenset({"url.full", "http.url"})
_TARGET_KEYS = frozenset({"http.target"})
_QUERY_KEYS = frozenset({"url.query"})
_PATH_KEYS = frozenset({"url.path"})
_URL_LIKE_KEYS = _URL_KEYS | _TARGET_KEYS | _QUERY_KEYS | _PATH_KEYS
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_DATA_PREFIXES = (
    _schema.PROPERTIES_PREFIX,
    _schema.USER_PREFIX,
    _schema.TRAITS_PREFIX,
    "http.request.header.",
    "http.response.header.",
)
_SEMCONV_USER_KEYS = ("user.id", "user.email", "user.name", "user.full_name")
_USER_DATA_PREFIXES = (_schema.USER_PREFIX, _schema.TRAITS_PREFIX)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s.\-\[\]]+")


def normalize_key(key: str) -> str:
    """``XAuthKey`` -> ``x_auth_key``; ``Set-Cookie`` -> ``set_cookie``; ``api.key``,
    ``user[password]`` -> ``api_key``, ``user_password_``: what the key rule matches."""
    return _SEPARATORS.sub("_", _CAMEL.sub("_", key)).lower()


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        total += _DOUBLED[value] if index % 2 else value
    return total % 10 == 0


def _digit(char: str) -> int:
    return ord(char) - 48 if char <= "9" else int(char)  # int() also reads non-ASCII digits


def card_spans(run: str) -> list[tuple[int, int]] | None:
    """The character spans of card numbers inside a run of digits (spaces and dashes allowed).

    A card number is 13 to 19 digits passing the Luhn check, found (1) on group boundaries
    (a whole run, or whole space/dash-separated groups of it: ``4111 1111 1111 1111 12/25``),
    or (2) inside a group, starting with a major network's digit (2-6): 15 or 16 digits followed
    by 3 or 4 more in the same group (a CVV or an expiry glued on), or anywhere in a group of
    20 to 32 digits (no 64-bit integer identifier is that long). None: the run is redacted
    whole, being too long to be anything but an attack or a card among other digits (a group
    of more than 32 digits, or more than 64 digits in all).
    """
    groups = [(match.start(), match.group()) for match in _DIGIT_GROUP.finditer(run)]
    digits = "".join(group for _, group in groups)
    count = len(digits)
    if count > _MAX_CARD_RUN_DIGITS or any(len(group) > _MAX_CARD_GROUP_DIGITS for _, group in groups):
        return None
    values = [ord(char) - 48 for char in digits] if digits.isascii() else [int(char) for char in digits]
    # luhn[p][k]: Luhn sum of digits[:k] with the digits at parity p doubled.
    luhn: tuple[list[int], list[int]] = ([0], [0])
    for index, value in enumerate(values):
        doubled = _DOUBLED[value]
        luhn[0].append(luhn[0][-1] + (doubled if index % 2 == 0 else value))
        luhn[1].append(luhn[1][-1] + (doubled if index % 2 else value))
    offsets = [offset + i for offset, group in groups for i in range(len(group))]
    windows: list[tuple[int, int]] = []  # (first digit, digit after the last)
    bounds: list[tuple[int, int]] = []
    start = 0
    for _, group in groups:
        bounds.append((start, start + len(group)))
        start += len(group)
    ends = [end for _, end in bounds]
    for first, (group_start, _) in enumerate(bounds):  # (1) whole groups: ends 13 to 19 digits on
        low = bisect.bisect_left(ends, group_start + 13, first)
        high = bisect.bisect_right(ends, group_start + 19, low)
        windows.extend((group_start, end) for end in ends[low:high])
    for group_start, group_end in bounds:  # (2) inside a group
        size = group_end - group_start
        if str(values[group_start]) in _CARD_IIN_FIRST_DIGITS:
            glued = [length for length in (15, 16) if 3 <= size - length <= 4]  # CVV, expiry
            windows.extend((group_start, group_start + length) for length in glued)
        if size > 19:
            windows.extend(
                (first, first + length)
                for length in range(13, 20)
                for first in range(group_start, group_end - length + 1)
                if str(values[first]) in _CARD_IIN_FIRST_DIGITS
            )
    return [
        (offsets[first], offsets[end - 1] + 1)
        for first, end in windows
        if (luhn[(end - 1) % 2 ^ 1][end] - luhn[(end - 1) % 2 ^ 1][first]) % 10 == 0
    ]


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each stretch covered by ``spans`` (merged when they touch) masked once."""
    out: list[str] = []
    position = 0
    for start, end in sorted(spans):
        if start <= position and out:
            position = max(position, end)  # overlaps or touches the previous mask
            continue
        out.append(text[position:start])
        out.append(MASK)
        position = end
    out.append(text[position:])
    return "".join(out)


def _number_text(value: int | float) -> str | None:
    """The digits of a number that is long enough to be a card number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if abs(value) >= 10**12 else None
    if math.isfinite(value) and abs(value) >= 1e12:
        return repr(value)
    return None


class Scrubber:
    """Scrubs attribute mappings, texts and URLs according to the configured rules."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        keys: Sequence[str] = (),
        key_regexp: str | None = None,
        value_regexp: str | None = None,
        hmac_key: str | None = None,
        withhold_user_identifiers: bool = False,
    ) -> None:
        self.enabled = enabled
        words = sorted({normalize_key(key) for key in keys if key})
        self._keys_regex = (
            re.compile(r"(?:^|[._])(?:" + "|".join(map(re.escape, words)) + r")(?:$|[._])") if words else None
        )
        self._builtin_key_rule = key_regexp is None
        pattern = DEFAULT_KEY_REGEXP if key_regexp is None else key_regexp
        self._key_regex = re.compile(pattern, re.IGNORECASE) if pattern else None
        self._custom_value_regex = re.compile(value_regexp) if value_regexp else None
        self._value_rule = value_regexp != ""
        self._hmac_key = hmac_key.encode() if hmac_key else None
        self._withhold = withhold_user_identifiers
        # Keys repeat endlessly (the same attributes on every span): decide each one once.
        self.is_sensitive_key = functools.lru_cache(maxsize=8192)(self._is_sensitive_key)
        self._key_rule_applies = functools.lru_cache(maxsize=8192)(self._key_rule)
        self._output_key = functools.lru_cache(maxsize=8192)(self._data_key)
        self._scrub_key = functools.lru_cache(maxsize=8192)(self._scrub_text)
        # So do many values (user agents, methods, paths): scrub short ones once.
        self._scrub_short = functools.lru_cache(maxsize=4096)(self._scrub_text)
        self._plans: dict[str, _Plan] = {}
        builtin_values = self.enabled and self._value_rule and self._custom_value_regex is None
        self._suspect = suspect if builtin_values else None

    @classmethod
    def from_config(cls, config: Config) -> Scrubber:
        return cls(
            enabled=config.strip_sensitive_data,
            keys=config.strip_sensitive_keys,
            key_regexp=config.strip_sensitive_key_regexp,
            value_regexp=config.strip_sensitive_value_regexp,
            hmac_key=config.user_id_hmac_key,
            withhold_user_identifiers=config.withhold_user_identifiers,
        )

    @property
    def active(self) -> bool:
        return self.enabled or self._hmac_key is not None or self._withhold

    # -- rules -------------------------------------------------------------------------------

    def _is_sensitive_key(self, key: str) -> bool:
        normalized = normalize_key(key)
        if self._keys_regex is not None and self._keys_regex.search(normalized):
            return True
        if self._key_regex is None:
            return False
        if self._key_regex.search(normalized) is not None:
            return True
        return not self._builtin_key_rule and self._key_regex.search(key) is not None

    def scrub_text(self, text: str) -> str:
        """The value rule: redact the matching parts of ``text``."""
        if not self.enabled or not self._value_rule or len(text) < 5:
            return text
        if len(text) <= _CACHED_TEXT_LENGTH:
            return self._scrub_short(text)
        return self._scrub_text(text)

    def _scrub_text(self, text: str) -> str:
        if len(text) > MAX_SCRUBBED_CHARS:
            stats.add("values_redacted_oversized")
            return MASK
        if self._custom_value_regex is not None:
            return self._custom_value_regex.sub(MASK, text)
        return self._builtin_scrub(text)

    def _builtin_scrub(self, text: str) -> str:
        """One left-to-right pass: each search resumes where the previous match ended."""
        if not suspect(text):
            return text
        kinds = tuple(kind for kind in _BUILTIN_VALUE_PATTERNS if _may_match(kind, text))
        if not kinds:
            return text
        out: list[str] = []
        position = 0  # text[:position] is in ``out``
        resume = 0  # where the next search starts
        search = _value_regex(kinds).search
        backwards = text[::-1] if "pair" in kinds or "pair_tuple" in kinds else ""
        while True:
            match = search(text, resume)
            if match is None:
                break
            kind = match.lastgroup
            start, end = match.span()
            if kind in {"pair", "pair_tuple"}:
                key_end = start + 1 if text[start] in "\"'" else start  # after a key's closing quote
                key = _key_before(backwards, key_end, tuple_only=kind == "pair_tuple")
                if key is None or not (key in SIGNATURE_PARAMETERS or self.is_sensitive_key(key)):
                    resume = end
                    continue
                separator = "," if kind == "pair_tuple" else match.group("pair_sep")
                if separator == ":" and text[start] in "\"'":
                    separator = '":'  # a quoted key: JSON or a repr, members end at commas
                value_end = _pair_value_end(text, end, separator)
                out.append(text[position:end])
                if value_end > end:
                    out.append(MASK)
                position = resume = value_end
                continue
            out.append(text[position:start])
            if kind == "card":
                run = match.group()
                spans = card_spans(run)
                out.append(MASK if spans is None else _mask_spans(run, spans) if spans else run)
            else:
                out.append(MASK)
            position = resume = end
        if not out:
            return text
        out.append(text[position:])
        return "".join(out)

    # -- values ------------------------------------------------------------------------------

    def _masked(self, value: Any) -> Any:
        """A redacted value of an OTLP-valid type: a str, or a tuple of str for an array."""
        if isinstance(value, tuple | list):
            return tuple(MASK for _ in value)
        if isinstance(value, Mapping):
            return {key: self._masked(item) for key, item in value.items()}
        return MASK

    def _scrub_number(self, value: int | float) -> int | float | str:
        text = _number_text(value)
        if text is None or not self.enabled or not self._value_rule:
            return value
        return MASK if self._scrub_text(text) != text else value

    def scrub_value(self, value: Any) -> Any:
        """The value rule over a value of any attribute type; the key rule inside mappings."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._scrub_number(value)
        if isinstance(value, tuple | list):
            items = tuple(self.scrub_value(item) for item in value)
            if len({type(item) for item in items}) > 1:  # a masked number in a numeric array
                return tuple(item if isinstance(item, str) else str(item) for item in items)
            return items
        if isinstance(value, Mapping):
            return self.scrub_mapping(value)
        return value

    def scrub_key(self, key: str) -> str:
        """Keys are data too (form field names, query parameter names): the value rule on them."""
        if not self.enabled or not self._value_rule or len(key) < 5:
            return key
        return self._scrub_key(key)

    def scrub_mapping(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """Key rule then value rule on a nested mapping (extended attribute values)."""
        return {
            self.scrub_key(str(key)): self._masked(value)
            if self.is_sensitive_key(str(key))
            else self.scrub_value(value)
            for key, value in mapping.items()
        }

    # -- URLs --------------------------------------------------------------------------------

    def _parameter(self, name: str, separator: str, value: str) -> tuple[str, str | None]:
        """One query parameter, decoded and scrubbed: (name, value; None when it was masked).

        The one rule for parameters, whether they are shipped in a query string or parsed."""
        key = _unquote(name)
        scrubbed_key = self.scrub_key(key)
        if separator and (key in SIGNATURE_PARAMETERS or self.is_sensitive_key(key)):
            return scrubbed_key, None
        return scrubbed_key, self.scrub_text(_unquote(value)) if value else value

    def scrub_query(self, query: str) -> str:
        """Each parameter: name and value URL-decoded, scrubbed, re-encoded only if changed."""
        parts = []
        for pair in query.split("&"):
            name, sep, value = pair.partition("=")
            key, scrubbed = self._parameter(name, sep, value)
            if key != _unquote(name):
                name = urllib.parse.quote_plus(key)
            if scrubbed is None:
                parts.append(f"{name}={URL_MASK}")
                continue
            if scrubbed != _unquote(value):
                value = urllib.parse.quote_plus(scrubbed)
            parts.append(f"{name}{sep}{value}")
        return "&".join(parts)

    def scrub_parameters(self, query: str | None) -> dict[str, list[str]]:
        """A query string as scrubbed parameters (lists of values), bounded as ``parse_parameters``."""
        parameters: dict[str, list[str]] = {}
        if not query:
            return parameters
        count = 0
        for pair in query[:MAX_QUERY_CHARS].split("&"):
            if not pair:
                continue
            name, sep, value = pair.partition("=")
            key, scrubbed = self._parameter(name, sep, value)
            parameters.setdefault(key, []).append(MASK if scrubbed is None else scrubbed)
            count += 1
            if count >= MAX_PARAMETERS:
                break
        return parameters

    def scrub_request(self, fields: RequestFields) -> RequestContext:
        """A request's default properties, each field scrubbed by the rule for its kind (the
        same functions ``scrub_attributes`` applies to the attributes they come from)."""
        client_ip, user_agent, method, path, route, query = fields
        if not self.enabled:
            return RequestContext(client_ip, user_agent, method, path, route, parse_parameters(query))
        text = self.scrub_text
        return RequestContext(
            client_ip=client_ip if client_ip is None or _IP_LIKE(client_ip) else valid_text(text(client_ip)),
            user_agent=valid_text(text(user_agent)) if user_agent else user_agent,
            method=method if method is None or method in _METHODS else valid_text(text(method)),
            path=valid_text(self.scrub_path(path)) if path else path,
            route=valid_text(text(route)) if route else route,
            parameters={
                valid_text(key): [valid_text(value) for value in values]
                for key, values in self.scrub_parameters(query).items()
            },
        )

    def scrub_path(self, path: str) -> str:
        """A URL path, scrubbed after percent-decoding (``/pay/4111%201111...``); its original
        encoding is kept when nothing was redacted."""
        if "%" not in path:
            return self.scrub_text(path)
        decoded = urllib.parse.unquote(path)
        scrubbed = self.scrub_text(decoded)
        return path if scrubbed == decoded else urllib.parse.quote(scrubbed, safe=_PATH_SAFE)

    def scrub_target(self, target: str) -> str:
        path, sep, query = target.partition("?")
        return self.scrub_path(path) + (sep + self.scrub_query(query) if sep else "")

    def scrub_url(self, url: str) -> str:
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            return self.scrub_text(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{URL_MASK}:{URL_MASK}@" + netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(
            (
                parts.scheme,
                netloc,
                self.scrub_path(parts.path),
                self.scrub_query(parts.query) if parts.query else "",
                self.scrub_text(parts.fragment),
            )
        )

    # -- attributes --------------------------------------------------------------------------

    def _key_rule(self, key: str) -> bool:
        """Whether the key rule redacts attribute ``key`` (user-data prefixes are looked through)."""
        if self._withhold and (key.startswith(_USER_DATA_PREFIXES) or key in _SEMCONV_USER_KEYS):
            return True
        for prefix in _DATA_PREFIXES:
            if key.startswith(prefix):
                return self.is_sensitive_key(key[len(prefix) :])
        if key.startswith("sqreen."):
            return False  # our own bookkeeping attributes
        return self.is_sensitive_key(key)

    def _pseudonymise(self, attributes: dict[str, Any]) -> None:
        """The app's own semantic-convention user attributes give way to ``user.hash``.

        (Ours are pseudonymised where they are written, on the request path.)
        """
        assert self._hmac_key is not None
        first: Any = None
        for key in _SEMCONV_USER_KEYS:
            if key in attributes:
                value = attributes.pop(key)
                if first is None:
                    first = value
        if first is not None and "user.hash" not in attributes:
            attributes["user.hash"] = pseudonym(self._hmac_key, first)

    def scrub_attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        """A scrubbed copy of span, event or link attributes."""
        if not attributes:
            return {}
        values = readable(attributes)
        if not self.enabled and not self._withhold:
            result = dict(values)
        else:
            result = {}
            plans, scrub = self._plans, self._scrub_planned
            for key, value in values.items():  # this runs per attribute: kept lean
                plan = plans.get(key) or self._plan(key)
                result[plan.key] = scrub(plan, key, value)
        if self._hmac_key is not None:
            self._pseudonymise(result)
        return result

    def scrub_event(
        self, attributes: Mapping[str, Any], *, scrubbed: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (properties, user identifiers) of one of our events, scrubbed by the same plans as
        ``scrub_attributes`` (the rest of its attributes are our bookkeeping, not shipped).
        ``scrubbed``: this scrubber already scrubbed them (a ``LiveEvent``'s): only split."""
        properties: dict[str, Any] = {}
        identifiers: dict[str, Any] = {}
        plans, scrub = self._plans, self._scrub_planned
        for key, value in readable(attributes).items():
            plan = plans.get(key) or self._plan(key)
            if plan.group is _PROPERTIES:
                properties[plan.short] = value if scrubbed else scrub(plan, key, value)
            elif plan.group is _IDENTIFIERS:
                identifiers[plan.short] = value if scrubbed else scrub(plan, key, value)
        return properties, identifiers

    def _scrub_planned(self, plan: _Plan, key: str, value: Any) -> Any:
        """One attribute value, by its key's plan (the common cases first: this runs per value)."""
        action = plan.action
        if action is _REDACT:
            return self._masked(value)
        if action is _KEEP or not self.enabled:
            return value
        kind = type(value)
        if kind is str:
            if action is _URL:
                return self._url_or_text(key, value)
            suspect = self._suspect
            if suspect is not None and (len(value) < 5 or not suspect(value)):
                return value  # nothing any built-in pattern could match
            return self.scrub_text(value)
        if kind is bool:
            return value
        return self.scrub_value(value)

    def _plan(self, key: str) -> _Plan:
        """What is done with attribute ``key``, decided once per key (memoised)."""
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        out = self._output_key(key)
        if self._key_rule_applies(key):
            action = _REDACT
        elif key in _BOOKKEEPING:
            action = _KEEP
        elif key in _URL_LIKE_KEYS:
            action = _URL
        else:
            action = _VALUE
        group: object | None = None
        short = out
        for prefix, kind in ((_schema.PROPERTIES_PREFIX, _PROPERTIES), (_schema.USER_PREFIX, _IDENTIFIERS)):
            if out.startswith(prefix):
                group, short = kind, out[len(prefix) :]
        plan = self._plans[key] = _Plan(action, out, group, short)
        return plan

    def _data_key(self, key: str) -> str:
        """An attribute key whose data part (a property name...) went through the value rule."""
        if not self.enabled:
            return key
        for prefix in _DATA_PREFIXES:
            if key.startswith(prefix):
                return prefix + self.scrub_key(key[len(prefix) :])
        return key

    def _url_or_text(self, key: str, value: str) -> str:
        if len(value) > MAX_SCRUBBED_CHARS:
            stats.add("values_redacted_oversized")
            return URL_MASK
        if key in _QUERY_KEYS:
            return self.scrub_query(value)
        if key in _PATH_KEYS:
            return self.scrub_path(value)
        if key in _TARGET_KEYS:
            return self.scrub_target(value)
        return self.scrub_url(value)


def _unquote(component: str) -> str:
    """``unquote_plus`` only where there is something to decode (most query parts have nothing)."""
    return urllib.parse.unquote_plus(component) if "%" in component or "+" in component else component


def _pair_value_end(text: str, start: int, separator: str) -> int:
    """Where the value of a sensitive pair starting at ``start`` ends.

    A quoted value (``'x'``, ``"x"``, ``b'x'``, escapes honoured) ends at its closing quote; a
    JSON array or object at its matching bracket; otherwise the value of ``key=value`` ends at
    the usual delimiters, that of a JSON member at the next member, that of a header or log
    line ``Key: value`` at the end of the line (or, when that line is empty, at the end of the
    next, indented one: YAML). Bounded by ``_MAX_PAIR_VALUE`` characters; linear.
    """
    limit = min(len(text), start + _MAX_PAIR_VALUE)
    at = start
    if text.startswith(MASK, at):  # already scrubbed: keep it as it is (scrubbing is idempotent)
        after = at + len(MASK)
        if after >= len(text) or _PAIR_VALUE_END[separator].match(text, after):
            return after
    if at + 1 < limit and text[at] in "bBuUrR" and text[at + 1] in "\"'":
        at += 1  # a bytes/unicode/raw literal in a repr
    if at < limit and text[at] in "\"'":
        closing = _QUOTED_END[text[at]].match(text, at + 1, limit)
        return limit if closing is None else closing.end()
    if at < limit and text[at] in "[{" and separator != "=":
        return _bracket_end(text, at, limit)
    if separator == ":" and at < limit and text[at] in "\r\n":
        line = _NEXT_INDENTED_LINE.match(text, at, limit)
        if line is not None:
            return line.end()
    stop = _PAIR_VALUE_END[separator].search(text, at, limit)
    return limit if stop is None else stop.start()


_QUOTED_END = {quote: re.compile(rf"(?:[^{quote}\\]|\\.)*{quote}", re.DOTALL) for quote in "\"'"}
_NEXT_INDENTED_LINE = re.compile(r"\r?\n[ \t]+[^\r\n]*")
_BRACKET_OR_QUOTE = re.compile(r"[\[\]{}\"']")


def _bracket_end(text: str, at: int, limit: int) -> int:
    """The end of the JSON-like array or object opening at ``at`` (strings skipped), or ``limit``."""
    depth = 0
    position = at
    while True:
        special = _BRACKET_OR_QUOTE.search(text, position, limit)
        if special is None:
            return limit
        char = special.group()
        if char in "\"'":
            closing = _QUOTED_END[char].match(text, special.end(), limit)
            if closing is None:
                return limit
            position = closing.end()
            continue
        depth += 1 if char in "[{" else -1
        position = special.end()
        if depth <= 0:
            return position


_current: tuple[Config, Scrubber] | None = None


def scrubber_for(config: Config) -> Scrubber:
    """The one scrubber of ``config`` (shared, so its per-key plans are learnt once)."""
    global _current  # noqa: PLW0603 - a one-entry cache, replaced when the settings change
    current = _current
    if current is not None and current[0] is config:
        return current[1]
    scrubber = Scrubber.from_config(config)
    _current = (config, scrubber)
    return scrubber
