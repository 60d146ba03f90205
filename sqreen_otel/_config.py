"""One validated configuration object, read once from the environment.

Every setting, its environment variable, its default and its parser live in ``_SETTINGS``
below: nowhere else. Precedence: an argument to ``configure()`` beats the environment, which
beats the default. A bad environment value logs a warning naming the variable and falls back
to the default (importing the package never crashes the app), except for *security* settings,
which fail closed: an invalid ``SQREEN_TRUSTED_PROXIES`` or ``SQREEN_IP_HEADER`` believes no
forwarding header, an invalid ``SQREEN_USER_ID_HMAC_KEY`` withholds user identifiers, an
invalid ``SQREEN_USER_ON_HOST_SPANS`` keeps them off host spans (each logged as an error
naming the variable). A bad *argument* is a programming error raised at ``configure()`` time
(``TypeError`` for a wrong type, ``ValueError`` for a wrong value), never later on the
request path.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sqreen_otel._log import logger

if TYPE_CHECKING:
    from sqreen_otel._http.client_ip import ClientIPPolicy

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Documented hard limits of the event model (docs/events.md); not settings.
MAX_NAME_LENGTH = 256
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 4096
MAX_NESTING_DEPTH = 4
MAX_FLATTENED_PROPERTIES = 64
MAX_SEQUENCE_ITEMS = 32
MAX_USER_IDENTIFIERS = 16
MAX_EVENT_PROPERTIES_CEILING = 128  # OpenTelemetry's default per-event attribute limit

EXPORTER_NAMES = ("local", "otlp", "http", "console", "none")
MIN_HMAC_KEY_BYTES = 32  # as the Collector's redaction processor requires for hmac-sha256
# Sqreen's Python agent default for SQREEN_STRIP_SENSITIVE_KEYS.
DEFAULT_SENSITIVE_KEYS = (
    "password",
    "secret",
    "passwd",
    "authorization",
    "api_key",
    "apikey",
    "access_token",
    "token",
)


def default_local_store() -> str:
    """``$XDG_DATA_HOME/sqreen-otel/events.db`` (``~/.local/share/sqreen-otel/events.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "sqreen-otel", "events.db")


_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "no", "n", "off"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Config:
    """The settings in force. Build it with ``configure()``; read it with ``current_config()``.

    For the three scrubbing rules, ``None`` means the built-in default and an empty value
    disables the rule. Secrets (token, HMAC key) are kept out of ``repr``.
    """

    disable: bool = False
    ip_header: str | None = None
    trusted_proxies: tuple[IPNetwork, ...] | None = None  # None: Sqreen mode; (): peer only
    max_event_properties: int = 16
    log_level: str | None = None
    exporter: tuple[str, ...] = ("local",)
    event_signal: str | None = None  # span | logs | both | none; None: see ``event_signals``
    heartbeat_delay: float = 60.0
    batch_size: int = 1000
    max_queue_length: int = 10000
    graceful_timeout: float = 5.0
    spool_interval: float = 0.5
    store_max_mb: float = 256.0
    store_max_age: float = 7 * 86400.0
    strip_sensitive_data: bool = True
    strip_sensitive_keys: tuple[str, ...] = DEFAULT_SENSITIVE_KEYS
    strip_sensitive_key_regexp: str | None = None
    strip_sensitive_value_regexp: str | None = None
    user_id_hmac_key: str | None = field(default=None, repr=False)
    user_on_host_spans: bool = True
    ingestion_url: str | None = None
    otlp_endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    app_name: str | None = None
    local_store: str = field(default_factory=default_local_store)
    responses: bool = True
    actions_file: str | None = None
    actions_store: str | None = None  # None: actions.db beside the local store
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_prefix: str = "sqreen-otel:"
    actions_refresh: float = 1.0
    ip_passlist: tuple[IPNetwork, ...] = ()
    path_passlist: tuple[str, ...] = ()
    block_status: int = 403
    block_html_file: str | None = None
    block_json_file: str | None = None
    playbooks_file: str | None = None
    playbooks_interval: float = 0.5
    # Derived, not a setting: SQREEN_USER_ID_HMAC_KEY was set but invalid (fail closed).
    withhold_user_identifiers: bool = False
    # Derived: OTEL_SDK_DISABLED=true, which disables us too (there are no spans to record on).
    otel_sdk_disabled: bool = False

    @functools.cached_property
    def event_signals(self) -> frozenset[str]:
        """Where our events appear in the app's own telemetry: ``span`` (span events on the
        request span), ``logs`` (log records through the app's ``LoggerProvider``), both, or
        neither. Unset: ``span``, except with the ``otlp`` exporter, which is then the one path
        of the events to a Collector (so a Collector that also receives the app's traces or
        logs gets each event once)."""
        signal = self.event_signal or ("none" if "otlp" in self.exporter else "span")
        return _SIGNALS[signal]

    @property
    def events_on_spans(self) -> bool:
        return "span" in self.event_signals

    @functools.cached_property
    def client_ip_policy(self) -> ClientIPPolicy:
        """The client-IP settings as one hashable value (a resolution cache key)."""
        from sqreen_otel._http.client_ip import ClientIPPolicy

        return ClientIPPolicy(self.ip_header, self.trusted_proxies)


T = TypeVar("T")


@dataclass(frozen=True)
class _FailClosed:
    """What an invalid environment value of a security setting turns into, and why it is safe."""

    values: Mapping[str, Any]  # fields to set (possibly others than the setting's own)
    outcome: str


@dataclass(frozen=True)
class _Setting(Generic[T]):
    field: str
    env: str
    parse: Callable[[Any], T]  # takes the environment's str, or an argument of ``argument_types``
    argument_types: tuple[type, ...]
    fail_closed: _FailClosed | None = None  # a security setting: never fall back to a weaker default
    empty_disables: bool = False  # an empty variable turns the rule off (Sqreen's); else it means unset


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}, got {value!r}")
    raise TypeError(f"expected a bool, got {type(value).__name__}")


def _parse_header_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a header name (str), got {type(value).__name__}")
    name = value.strip()
    if not name:
        return None
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return name.lower()


def _parse_networks(value: Any) -> tuple[IPNetwork, ...] | None:
    """CIDRs; None (unset, or an empty variable) keeps Sqreen mode; an empty list trusts nobody."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        items: Iterable[Any] = (part.strip() for part in value.split(",") if part.strip())
    elif isinstance(value, Iterable):
        items = value
    else:
        raise TypeError(f"expected CIDRs as a comma-separated str or an iterable, got {type(value).__name__}")
    networks: list[IPNetwork] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"expected a CIDR str, got {type(item).__name__}")
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


Number = TypeVar("Number", int, float)


def _number_in(kind: type[Number], low: Number, high: Number) -> Callable[[Any], Number]:
    """A parser for an int (``kind=int``) or a number (``kind=float``) within [low, high]."""
    accepted: tuple[type, ...] = (int,) if kind is int else (int, float)
    noun = "an integer" if kind is int else "a number"

    def parse(value: Any) -> Number:
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ValueError(f"expected {noun}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise TypeError(f"expected {noun}, got {type(value).__name__}")
        number: Number = kind(cast(Any, value))  # an int or float here (checked just above)
        if not low <= number <= high:  # also refuses NaN
            raise ValueError(f"expected {noun} from {low} to {high}, got {number}")
        return number

    return parse


_SIGNALS = {
    "span": frozenset({"span"}),
    "logs": frozenset({"logs"}),
    "both": frozenset({"span", "logs"}),
    "none": frozenset(),
}


def _parse_signal(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected one of {', '.join(_SIGNALS)}, got {type(value).__name__}")
    signal = value.strip().lower()
    if signal not in _SIGNALS:
        raise ValueError(f"unknown event signal {value.strip()[:40]!r}; known: {', '.join(_SIGNALS)}")
    return signal


def _parse_log_level(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a level name, got {type(value).__name__}")
    level = value.strip().upper()
    if not level:
        return None
    if level not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return level


def _parse_exporters(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"expected exporter names, got {type(item).__name__}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in EXPORTER_NAMES:
            raise ValueError(f"unknown exporter {item.strip()!r}; known: {', '.join(EXPORTER_NAMES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("no exporter named (use 'none' to ship nothing)")
    if "none" in names and len(names) > 1:
        raise ValueError("'none' cannot be combined with other exporters")
    return () if names == ["none"] else tuple(names)


def _parse_key_list(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError("expected key names")
    return tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))


def _parse_regexp(value: Any) -> str | None:
    """A pattern that compiles; "" disables the rule; None keeps the built-in default."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a regular expression, got {type(value).__name__}")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _parse_secret(minimum_bytes: int) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected a str, got {type(value).__name__}")
        if len(value.encode()) < minimum_bytes:
            raise ValueError(f"must be at least {minimum_bytes} bytes")  # never echo a secret
        return value

    return parse


def _parse_passlist(value: Any) -> tuple[IPNetwork, ...]:
    return _parse_networks(value) or ()


def _parse_path_prefixes(value: Any) -> tuple[str, ...]:
    """Path prefixes (comma-separated, or a list), each starting with ``/``."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise TypeError(f"expected path prefixes, got {type(value).__name__}")
    prefixes = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"expected a path prefix str, got {type(item).__name__}")
        prefix = item.strip()
        if not prefix:
            continue
        if not prefix.startswith("/") or any(ord(char) < 0x20 for char in prefix) or len(prefix) > 1024:
            raise ValueError("path prefixes must start with / (and hold no control characters)")
        from sqreen_otel._responses.passlists import normalized_path

        prefixes.append(normalized_path(prefix))
    return tuple(prefixes)


def _parse_redis_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a URL, got {type(value).__name__}")
    if urllib.parse.urlsplit(value.strip()).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")  # never echo it: a password
    return value.strip()


def _parse_optional_path(value: Any) -> str | None:
    return None if value is None or value == "" else _parse_path(value)


def _parse_prefix(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= 64 or not value.strip().isprintable():
        raise ValueError("expected 1 to 64 printable characters")
    return value.strip()


def _parse_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a URL, got {type(value).__name__}")
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value.strip()


def _parse_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a str, got {type(value).__name__}")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("control characters are not allowed")
    return value


def _parse_path(value: Any) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise TypeError("expected a file path")
    if "\x00" in str(value):
        raise ValueError("a file path cannot contain NUL")
    return os.path.abspath(os.path.expanduser(str(value).strip()))


_NONE = type(None)
_PEER_ONLY = _FailClosed(
    {"trusted_proxies": ()}, "no forwarding header is believed: the client IP is the socket peer"
)
_BUILTIN_RULE = _FailClosed({}, "the built-in rule stays in force")
_SETTINGS: tuple[_Setting[Any], ...] = (
    _Setting("disable", "SQREEN_DISABLE", _parse_bool, (bool,)),
    _Setting("ip_header", "SQREEN_IP_HEADER", _parse_header_name, (str, _NONE), _PEER_ONLY),
    _Setting(
        "trusted_proxies", "SQREEN_TRUSTED_PROXIES", _parse_networks, (str, list, tuple, _NONE), _PEER_ONLY
    ),
    _Setting(
        "max_event_properties",
        "SQREEN_MAX_EVENT_PROPERTIES",
        _number_in(int, 1, MAX_EVENT_PROPERTIES_CEILING),
        (int,),
    ),
    _Setting("log_level", "SQREEN_LOG_LEVEL", _parse_log_level, (str, _NONE)),
    _Setting("exporter", "SQREEN_EXPORTER", _parse_exporters, (str, list, tuple)),
    _Setting("event_signal", "SQREEN_EVENT_SIGNAL", _parse_signal, (str, _NONE)),
    _Setting("heartbeat_delay", "SQREEN_HEARTBEAT_DELAY", _number_in(float, 0.01, 3600.0), (int, float)),
    _Setting("batch_size", "SQREEN_BATCH_SIZE", _number_in(int, 1, 100_000), (int,)),
    _Setting("max_queue_length", "SQREEN_MAX_QUEUE_LENGTH", _number_in(int, 1, 10_000_000), (int,)),
    _Setting("graceful_timeout", "SQREEN_GRACEFUL_TIMEOUT", _number_in(float, 0.0, 300.0), (int, float)),
    _Setting("spool_interval", "SQREEN_SPOOL_INTERVAL", _number_in(float, 0.01, 60.0), (int, float)),
    _Setting("store_max_mb", "SQREEN_STORE_MAX_MB", _number_in(float, 1.0, 1_000_000.0), (int, float)),
    _Setting(
        "store_max_age", "SQREEN_STORE_MAX_AGE", _number_in(float, 60.0, 10 * 365 * 86400.0), (int, float)
    ),
    _Setting(
        "strip_sensitive_data",
        "SQREEN_STRIP_SENSITIVE_DATA",
        _parse_bool,
        (bool,),
        _FailClosed({}, "scrubbing stays on"),
    ),
    _Setting(
        "strip_sensitive_keys",
        "SQREEN_STRIP_SENSITIVE_KEYS",
        _parse_key_list,
        (str, list, tuple),
        empty_disables=True,
    ),
    _Setting(
        "strip_sensitive_key_regexp",
        "SQREEN_STRIP_SENSITIVE_KEY_REGEXP",
        _parse_regexp,
        (str, _NONE),
        _BUILTIN_RULE,
        empty_disables=True,
    ),
    _Setting(
        "strip_sensitive_value_regexp",
        "SQREEN_STRIP_SENSITIVE_VALUE_REGEXP",
        _parse_regexp,
        (str, _NONE),
        _BUILTIN_RULE,
        empty_disables=True,
    ),
    _Setting(
        "user_id_hmac_key",
        "SQREEN_USER_ID_HMAC_KEY",
        _parse_secret(MIN_HMAC_KEY_BYTES),
        (str, _NONE),
        _FailClosed(
            {"withhold_user_identifiers": True, "user_on_host_spans": False},
            "user identifiers are withheld from exports and host spans",
        ),
    ),
    _Setting(
        "user_on_host_spans",
        "SQREEN_USER_ON_HOST_SPANS",
        _parse_bool,
        (bool,),
        _FailClosed({"user_on_host_spans": False}, "user identifiers and traits are kept off host spans"),
    ),
    _Setting("ingestion_url", "SQREEN_INGESTION_URL", _parse_url, (str, _NONE)),
    _Setting("otlp_endpoint", "SQREEN_OTLP_ENDPOINT", _parse_url, (str, _NONE)),
    _Setting("token", "SQREEN_TOKEN", _parse_secret(1), (str, _NONE)),
    _Setting("app_name", "SQREEN_APP_NAME", _parse_text, (str, _NONE)),
    _Setting("local_store", "SQREEN_LOCAL_STORE", _parse_path, (str, os.PathLike)),
    _Setting("responses", "SQREEN_RESPONSES", _parse_bool, (bool,)),
    _Setting("actions_file", "SQREEN_ACTIONS_FILE", _parse_optional_path, (str, os.PathLike, _NONE)),
    _Setting("actions_store", "SQREEN_ACTIONS_STORE", _parse_optional_path, (str, os.PathLike, _NONE)),
    _Setting("redis_url", "SQREEN_REDIS_URL", _parse_redis_url, (str, _NONE)),
    _Setting("redis_prefix", "SQREEN_REDIS_PREFIX", _parse_prefix, (str,)),
    _Setting("actions_refresh", "SQREEN_ACTIONS_REFRESH", _number_in(float, 0.05, 60.0), (int, float)),
    _Setting("playbooks_file", "SQREEN_PLAYBOOKS_FILE", _parse_optional_path, (str, os.PathLike, _NONE)),
    _Setting("playbooks_interval", "SQREEN_PLAYBOOKS_INTERVAL", _number_in(float, 0.05, 60.0), (int, float)),
    _Setting(
        "ip_passlist",
        "SQREEN_IP_PASSLIST",
        _parse_passlist,
        (str, list, tuple, _NONE),
        _FailClosed({"ip_passlist": ()}, "no IP is exempt from security actions"),
    ),
    _Setting(
        "path_passlist",
        "SQREEN_PATH_PASSLIST",
        _parse_path_prefixes,
        (str, list, tuple, _NONE),
        _FailClosed({"path_passlist": ()}, "no path is exempt from security actions"),
    ),
    _Setting("block_status", "SQREEN_BLOCK_STATUS", _number_in(int, 400, 599), (int,)),
    _Setting("block_html_file", "SQREEN_BLOCK_HTML_FILE", _parse_optional_path, (str, os.PathLike, _NONE)),
    _Setting("block_json_file", "SQREEN_BLOCK_JSON_FILE", _parse_optional_path, (str, os.PathLike, _NONE)),
)

SETTING_NAMES = tuple(setting.field for setting in _SETTINGS)
DERIVED_FIELDS = ("withhold_user_identifiers", "otel_sdk_disabled")
ENVIRONMENT_VARIABLES = {setting.field: setting.env for setting in _SETTINGS}


def otel_sdk_disabled(environ: Mapping[str, str]) -> bool:
    """``OTEL_SDK_DISABLED=true``, read as the SDK reads it."""
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def build_config(overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting: argument, else environment variable, else default.

    ``overrides`` holds only the arguments the caller actually passed. Raises ``TypeError`` /
    ``ValueError`` for a bad argument; logs and falls back to the default for a bad
    environment value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    closed: dict[str, Any] = {}  # fail-closed values of invalid security settings: applied last
    for setting in _SETTINGS:
        if setting.field in overrides:
            value = overrides[setting.field]
            accepted = setting.argument_types
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
                names = " or ".join("None" if t is _NONE else t.__name__ for t in accepted)
                raise TypeError(
                    f"configure({setting.field}=...): expected {names}, got {type(value).__name__}"
                )
            try:
                values[setting.field] = setting.parse(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"configure({setting.field}=...): {exc}") from None
            continue
        raw = env.get(setting.env)
        if raw is None or (not raw.strip() and not setting.empty_disables):
            continue  # unset, or empty (``VAR=${UNSET}`` in a compose file): the default
        if not raw.strip():
            logger.warning("%s is empty: that scrubbing rule is off.", setting.env)
        try:
            values[setting.field] = setting.parse(raw)
        except (TypeError, ValueError) as exc:
            if setting.fail_closed is None:
                logger.warning("Ignoring %s: %s; using the default.", setting.env, exc)
            else:
                logger.error(
                    "Invalid %s: %s; failing closed: %s.", setting.env, exc, setting.fail_closed.outcome
                )
                closed.update(setting.fail_closed.values)
    values.update(closed)
    if otel_sdk_disabled(env):
        values.update(disable=True, otel_sdk_disabled=True)
    config = dataclasses.replace(Config(), **values)
    if "http" in config.exporter and config.ingestion_url is None:
        if "exporter" in overrides or "ingestion_url" in overrides:
            raise ValueError("configure(): the http exporter needs ingestion_url (or SQREEN_INGESTION_URL)")
        logger.error(
            "SQREEN_EXPORTER names http but SQREEN_INGESTION_URL is not set: the http exporter is off."
        )
        others = tuple(name for name in config.exporter if name != "http")
        config = dataclasses.replace(config, exporter=others or Config().exporter)
    return config


def apply_log_level(config: Config) -> None:
    """Set the level of the library's own logger only (never the host's loggers or handlers)."""
    if config.log_level is not None:
        logger.setLevel(getattr(logging, config.log_level))


_current: Config | None = None


def current_config() -> Config:
    """The settings in force: the last ``configure()``, or the environment read once."""
    global _current  # noqa: PLW0603 - the one process-wide config, swapped atomically
    config = _current
    if config is None:
        config = build_config({})
        apply_log_level(config)
        _current = config
    return config


def set_current_config(config: Config) -> None:
    global _current  # noqa: PLW0603
    _current = config
    apply_log_level(config)
