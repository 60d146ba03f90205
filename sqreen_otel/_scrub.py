"""PII scrubbing of everything our pipeline ships, on copies, in the export thread.

* **Key rule**: an attribute, property, identifier, trait, query parameter or captured header
  whose key matches (case-insensitively, anywhere in the key: ``user_password``) has its whole
  value redacted, recursively for nested values. The default is Sqreen Go's key regex plus the
  common names of Sentry's denylist and Datadog's obfuscation key regex; Sqreen Python's exact
  key list (``SQREEN_STRIP_SENSITIVE_KEYS``) applies beside it.
* **Value rule**: only the matching part of a string is redacted: card numbers (13 to 19
  digits, spaces or dashes allowed, Luhn-valid), bearer and basic credentials, JWTs,
  private-key blocks, GitHub and AWS access tokens, and ``password=...``-style pairs inside
  text. ``SQREEN_STRIP_SENSITIVE_VALUE_REGEXP`` replaces these built-in patterns.
* **URLs** (``url.query``, ``http.target``, ``url.full``, ``http.url``): parameters are scrubbed
  one by one (the key is kept, the value masked: the semantic conventions' signature
  parameters ``sig``, ``Signature``, ``X-Amz-*``... always, other keys by the key rule, values
  by the value rule), credentials in the authority are masked, the mask is URL-encoded so the
  URL stays parseable.
* **Pseudonymisation** (``SQREEN_USER_ID_HMAC_KEY``): user-identifier values become their
  HMAC-SHA256; ``user.id``/``user.email``/``user.name`` give way to ``user.hash``.

Nothing here changes an attribute into a type OTLP rejects: a redacted value is a string, or a
tuple of strings for a string array.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqreen_otel import _schema
from sqreen_otel._config import Config
from sqreen_otel._model import SecurityEvent
from sqreen_otel._request_context import RequestContext
from sqreen_otel._sdk_bridge import readable

MASK = "<Redacted by Sqreen>"
URL_MASK = urllib.parse.quote(MASK)

# Sqreen Go's (passw(((or)?d))|(phrase))|(secret)|(authorization)|(api_?key)|((access_?)?token),
# plus Sentry's denylist and Datadog's obfuscation key names. "sid" only as a whole segment.
DEFAULT_KEY_REGEXP = (
    r"(?i)passw(?:or)?d|pass_?phrase|passwd|pwd|secret|authori[sz]ation|api[_-]?key|x[_-]?api[_-]?key|"
    r"(?:access|refresh|auth|id|csrf|xsrf)?[_-]?token|bearer|jwt|cookie|credential|"
    r"(?:private|consumer|client|signing)[_-]?(?:key|secret)|privatekey|"
    r"sess(?:ion)?[_-]?(?:id|key)|phpsessid|jsessionid|connect\.sid|asp\.net[_-]sessionid|"
    r"(?:^|[^a-z0-9])(?:sid|session)(?:$|[^a-z0-9])|csrf|xsrf|signature|signed|mysql[_-]?pwd"
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

_SECRET_KEY_WORDS = (
    r"passw(?:or)?d|passphrase|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|token"
)
_BUILTIN_VALUE_PATTERNS = {
    "card": r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)",  # Luhn-checked in _builtin_replacement
    "private_key": r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END[A-Z ]*PRIVATE KEY-----|[\s\S]*)",
    "jwt": r"\bey[I-L][\w-]*\.ey[I-L][\w-]*(?:\.[\w.+/=-]*)?",
    "bearer": r"\b(?i:bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*",
    "github": r"\b(?:gh[oprsu]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    "aws": r"\b(?:A3T[A-Z0-9]|AKIA|ASIA)[A-Z0-9]{16}\b",
    "pair": rf"(?i:{_SECRET_KEY_WORDS})[\"']?\s*[=:]\s*(?P<pair_value>\"[^\"]*\"|'[^']*'|[^\s&;,]+)",
}
_BUILTIN_VALUE_REGEX = re.compile(
    "|".join(f"(?P<{name}>{pattern})" for name, pattern in _BUILTIN_VALUE_PATTERNS.items())
)

_CACHED_TEXT_LENGTH = 256  # longer texts are rarely repeated: not worth a cache slot
_URL_KEYS = frozenset({"url.full", "http.url"})
_TARGET_KEYS = frozenset({"http.target"})
_QUERY_KEYS = frozenset({"url.query"})
_URL_LIKE_KEYS = _URL_KEYS | _TARGET_KEYS | _QUERY_KEYS
_DATA_PREFIXES = (
    _schema.PROPERTIES_PREFIX,
    _schema.USER_PREFIX,
    _schema.TRAITS_PREFIX,
    "http.request.header.",
    "http.response.header.",
)
_SEMCONV_USER_KEYS = ("user.id", "user.email", "user.name", "user.full_name")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _builtin_replacement(match: re.Match[str]) -> str:
    kind = match.lastgroup
    text = match.group(0)
    if kind == "card":
        digits = text.replace(" ", "").replace("-", "")
        return MASK if 13 <= len(digits) <= 19 and luhn_valid(digits) else text
    if kind == "pair":  # keep the key, mask the value
        start, end = match.span("pair_value")
        offset = match.start()
        return text[: start - offset] + MASK + text[end - offset :]
    return MASK


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
    ) -> None:
        self.enabled = enabled
        self._keys = frozenset(key.lower() for key in keys)
        pattern = DEFAULT_KEY_REGEXP if key_regexp is None else key_regexp
        self._key_regex = re.compile(pattern) if pattern else None
        self._custom_value_regex = re.compile(value_regexp) if value_regexp else None
        self._value_rule = value_regexp != ""
        self._hmac_key = hmac_key.encode() if hmac_key else None
        # Keys repeat endlessly (the same attributes on every span): decide each one once.
        self.is_sensitive_key = functools.lru_cache(maxsize=8192)(self._is_sensitive_key)
        self._key_rule_applies = functools.lru_cache(maxsize=8192)(self._key_rule)
        # So do many values (user agents, methods, paths): scrub short ones once.
        self._scrub_short = functools.lru_cache(maxsize=4096)(self._scrub_text)

    @classmethod
    def from_config(cls, config: Config) -> Scrubber:
        return cls(
            enabled=config.strip_sensitive_data,
            keys=config.strip_sensitive_keys,
            key_regexp=config.strip_sensitive_key_regexp,
            value_regexp=config.strip_sensitive_value_regexp,
            hmac_key=config.user_id_hmac_key,
        )

    @property
    def active(self) -> bool:
        return self.enabled or self._hmac_key is not None

    # -- rules -------------------------------------------------------------------------------

    def _is_sensitive_key(self, key: str) -> bool:
        lowered = key.lower()
        if self._keys and (
            lowered in self._keys or any(part in self._keys for part in re.split(r"[._\-]", lowered))
        ):
            return True
        return self._key_regex is not None and self._key_regex.search(key) is not None

    def scrub_text(self, text: str) -> str:
        """The value rule: redact the matching parts of ``text``."""
        if not self.enabled or not self._value_rule or len(text) < 5:
            return text
        if len(text) <= _CACHED_TEXT_LENGTH:
            return self._scrub_short(text)
        return self._scrub_text(text)

    def _scrub_text(self, text: str) -> str:
        if self._custom_value_regex is not None:
            return self._custom_value_regex.sub(MASK, text)
        return _BUILTIN_VALUE_REGEX.sub(_builtin_replacement, text)

    def pseudonym(self, value: Any) -> str:
        assert self._hmac_key is not None
        return hmac.new(self._hmac_key, str(value).encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    # -- values ------------------------------------------------------------------------------

    def _masked(self, value: Any) -> Any:
        """A redacted value of an OTLP-valid type: a str, or a tuple of str for a str array."""
        if isinstance(value, tuple | list) and value and all(isinstance(item, str) for item in value):
            return tuple(MASK for _ in value)
        if isinstance(value, Mapping):
            return {key: self._masked(item) for key, item in value.items()}
        return MASK

    def scrub_value(self, value: Any) -> Any:
        """The value rule over a value of any attribute type; the key rule inside mappings."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, tuple | list):
            return tuple(self.scrub_value(item) for item in value)
        if isinstance(value, Mapping):
            return self.scrub_mapping(value)
        return value

    def scrub_mapping(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """Key rule then value rule on a nested mapping (extended attribute values)."""
        return {
            key: self._masked(value) if self.is_sensitive_key(str(key)) else self.scrub_value(value)
            for key, value in mapping.items()
        }

    # -- URLs --------------------------------------------------------------------------------

    def scrub_query(self, query: str) -> str:
        parts = []
        for pair in query.split("&"):
            name, sep, value = pair.partition("=")
            key = urllib.parse.unquote_plus(name)
            if sep and (key in SIGNATURE_PARAMETERS or self.is_sensitive_key(key)):
                parts.append(f"{name}={URL_MASK}")
                continue
            if sep and value:
                plain = urllib.parse.unquote_plus(value)
                scrubbed = self.scrub_text(plain)
                if scrubbed != plain:
                    value = urllib.parse.quote_plus(scrubbed)
            parts.append(f"{name}{sep}{value}")
        return "&".join(parts)

    def scrub_target(self, target: str) -> str:
        path, sep, query = target.partition("?")
        return self.scrub_text(path) + (sep + self.scrub_query(query) if sep else "")

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
                self.scrub_text(parts.path),
                self.scrub_query(parts.query) if parts.query else "",
                self.scrub_text(parts.fragment),
            )
        )

    # -- attributes --------------------------------------------------------------------------

    def _key_rule(self, key: str) -> bool:
        """Whether the key rule redacts attribute ``key`` (user-data prefixes are looked through)."""
        for prefix in _DATA_PREFIXES:
            if key.startswith(prefix):
                return self.is_sensitive_key(key[len(prefix) :])
        if key.startswith("sqreen."):
            return False  # our own bookkeeping attributes
        return self.is_sensitive_key(key)

    def _pseudonymise(self, attributes: dict[str, Any]) -> None:
        first: Any = None
        for key in _SEMCONV_USER_KEYS:
            if key in attributes:
                value = attributes.pop(key)
                if first is None:
                    first = value
        for key, value in list(attributes.items()):
            if key.startswith(_schema.USER_PREFIX):
                attributes[key] = self.pseudonym(value)
        if first is not None:
            attributes["user.hash"] = self.pseudonym(first)

    # -- the event model (for exporters that ship SecurityEvents, not spans) -----------------

    def scrub_parameters(self, parameters: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Query parameters: the URL rule per key (signature list, key rule), else the value rule."""
        return {
            key: [MASK] * len(values)
            if key in SIGNATURE_PARAMETERS or self.is_sensitive_key(key)
            else [self.scrub_text(value) for value in values]
            for key, values in parameters.items()
        }

    def scrub_request(self, request: RequestContext) -> RequestContext:
        if not self.enabled:
            return request
        return request._replace(
            user_agent=self.scrub_text(request.user_agent) if request.user_agent else request.user_agent,
            path=self.scrub_text(request.path) if request.path else request.path,
            route=self.scrub_text(request.route) if request.route else request.route,
            parameters=self.scrub_parameters(request.parameters),
        )

    def scrub_events(self, events: Iterable[SecurityEvent]) -> list[SecurityEvent]:
        """Scrubbed copies of security events; each request context is scrubbed once."""
        scrubbed_requests: dict[int, RequestContext] = {}
        result = []
        for event in events:
            request = scrubbed_requests.get(id(event.request))
            if request is None:
                request = scrubbed_requests[id(event.request)] = self.scrub_request(event.request)
            identifiers = (
                self.scrub_mapping(event.user_identifiers) if self.enabled else event.user_identifiers
            )
            if self._hmac_key is not None:
                identifiers = {key: self.pseudonym(value) for key, value in identifiers.items()}
            result.append(
                event._replace(
                    name=self.scrub_text(event.name),
                    properties=self.scrub_mapping(event.properties) if self.enabled else event.properties,
                    user_identifiers=identifiers,
                    request=request,
                )
            )
        return result

    def scrub_attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        """A scrubbed copy of span, event or link attributes."""
        if not attributes:
            return {}
        values = readable(attributes)
        if not self.enabled:
            result = dict(values)
        else:
            result = {}
            key_rule = self._key_rule_applies
            for key, value in values.items():  # the common types inline: this runs per attribute
                kind = type(value)
                if key_rule(key):
                    result[key] = self._masked(value)
                elif kind is str:
                    result[key] = (
                        self._url_or_text(key, value) if key in _URL_LIKE_KEYS else self.scrub_text(value)
                    )
                elif kind is int or kind is float or kind is bool:
                    result[key] = value
                else:
                    result[key] = self.scrub_value(value)
        if self._hmac_key is not None:
            self._pseudonymise(result)
        return result

    def _url_or_text(self, key: str, value: str) -> str:
        if key in _QUERY_KEYS:
            return self.scrub_query(value)
        if key in _TARGET_KEYS:
            return self.scrub_target(value)
        return self.scrub_url(value)
