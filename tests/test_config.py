"""One validated config object: environment, arguments, defaults, and the public facade."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from _support import Otel, run_python

import sqreen_otel
from sqreen_otel import Config
from sqreen_otel._config import DERIVED_FIELDS, ENVIRONMENT_VARIABLES, build_config


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert build_config({}, environ={}) == Config(
        disable=False,
        ip_header=None,
        trusted_proxies=None,
        max_event_properties=16,
        log_level=None,
        exporter=("local",),
        heartbeat_delay=60.0,
        batch_size=1000,
        max_queue_length=10000,
        graceful_timeout=5.0,
        spool_interval=0.5,
        store_max_mb=256.0,
        store_max_age=604800.0,
        strip_sensitive_data=True,
        strip_sensitive_keys=(
            "password",
            "secret",
            "passwd",
            "authorization",
            "api_key",
            "apikey",
            "access_token",
            "token",
        ),
        strip_sensitive_key_regexp=None,
        strip_sensitive_value_regexp=None,
        user_id_hmac_key=None,
        user_on_host_spans=True,
        ingestion_url=None,
        otlp_endpoint=None,
        token=None,
        app_name=None,
        local_store="/data/sqreen-otel/events.db",
    )


def test_every_setting_has_a_sqreen_environment_variable() -> None:
    assert set(ENVIRONMENT_VARIABLES) | set(DERIVED_FIELDS) == set(Config.__dataclass_fields__)
    assert all(name.startswith("SQREEN_") for name in ENVIRONMENT_VARIABLES.values())


def test_environment_values_are_parsed() -> None:
    config = build_config(
        {},
        environ={
            "SQREEN_DISABLE": "yes",
            "SQREEN_IP_HEADER": "X-Real-Client",
            "SQREEN_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32 ,192.168.1.1",
            "SQREEN_MAX_EVENT_PROPERTIES": "32",
            "SQREEN_LOG_LEVEL": "debug",
            "SQREEN_EXPORTER": "local, otlp,console",
            "SQREEN_HEARTBEAT_DELAY": "1.5",
            "SQREEN_MAX_QUEUE_LENGTH": "50",
            "SQREEN_STRIP_SENSITIVE_KEYS": "Pin, ssn",
            "SQREEN_STRIP_SENSITIVE_KEY_REGEXP": "",
            "SQREEN_USER_ID_HMAC_KEY": "k" * 32,
        },
    )
    assert config.disable is True
    assert config.ip_header == "x-real-client"
    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.168.1.1/32"),
    )
    assert (config.max_event_properties, config.log_level) == (32, "DEBUG")
    assert config.exporter == ("local", "otlp", "console")
    assert (config.heartbeat_delay, config.max_queue_length) == (1.5, 50)
    assert config.strip_sensitive_keys == ("pin", "ssn")
    assert config.strip_sensitive_key_regexp == ""  # empty: the rule is off
    assert config.user_id_hmac_key == "k" * 32
    assert "k" * 32 not in repr(config)
    assert build_config({}, environ={"SQREEN_EXPORTER": "none"}).exporter == ()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SQREEN_DISABLE", "maybe"),
        ("SQREEN_MAX_EVENT_PROPERTIES", "0"),
        ("SQREEN_MAX_EVENT_PROPERTIES", "lots"),
        ("SQREEN_LOG_LEVEL", "chatty"),
        ("SQREEN_EXPORTER", "carrier-pigeon"),
        ("SQREEN_EXPORTER", "none,local"),
        ("SQREEN_HEARTBEAT_DELAY", "-1"),
        ("SQREEN_INGESTION_URL", "ftp://nope"),
    ],
)
def test_a_bad_environment_value_warns_naming_the_variable_and_uses_the_default(
    variable: str, value: str, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    config = build_config({}, environ={variable: value})
    assert config == Config()
    (record,) = [r for r in sqreen_logs.records if variable in r.getMessage()]
    assert "using the default" in record.getMessage()


@pytest.mark.parametrize(
    ("variable", "value", "closed"),
    [
        ("SQREEN_TRUSTED_PROXIES", "10.0.0.0/33", {"trusted_proxies": ()}),
        ("SQREEN_TRUSTED_PROXIES", "10.0.0.0/8, not-a-network", {"trusted_proxies": ()}),
        ("SQREEN_IP_HEADER", "bad header", {"trusted_proxies": ()}),
        (
            "SQREEN_USER_ID_HMAC_KEY",
            "too-short",
            {"withhold_user_identifiers": True, "user_on_host_spans": False},
        ),
        ("SQREEN_USER_ON_HOST_SPANS", "nah", {"user_on_host_spans": False}),
        ("SQREEN_STRIP_SENSITIVE_DATA", "flase", {}),  # scrubbing stays on
        ("SQREEN_STRIP_SENSITIVE_KEY_REGEXP", "(unclosed", {}),  # the built-in rule stays
        ("SQREEN_STRIP_SENSITIVE_VALUE_REGEXP", "[a-", {}),
    ],
)
def test_an_invalid_security_setting_fails_closed_with_an_error_naming_the_variable(
    variable: str, value: str, closed: dict[str, Any], sqreen_logs: pytest.LogCaptureFixture
) -> None:
    config = build_config({}, environ={variable: value})
    assert config == dataclasses.replace(Config(), **closed)
    assert config.strip_sensitive_data and config.strip_sensitive_key_regexp is None
    (record,) = [r for r in sqreen_logs.records if variable in r.getMessage()]
    assert record.levelname == "ERROR"
    assert "failing closed" in record.getMessage()
    if variable == "SQREEN_USER_ID_HMAC_KEY":
        assert value not in record.getMessage()  # a secret is never echoed


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_variable_means_unset_and_never_turns_scrubbing_off(value: str) -> None:
    """``SQREEN_STRIP_SENSITIVE_DATA=${UNSET}`` in a compose file keeps scrubbing on."""
    config = build_config({}, environ={"SQREEN_STRIP_SENSITIVE_DATA": value, "SQREEN_DISABLE": value})
    assert config.strip_sensitive_data and not config.disable


def test_an_invalid_trusted_proxy_list_never_falls_back_to_the_forgeable_mode(tmp_path: Path) -> None:
    """SQREEN_TRUSTED_PROXIES with a typo: forwarding headers are ignored, not believed."""
    from sqreen_otel._http.client_ip import resolve_client_ip

    config = build_config({}, environ={"SQREEN_TRUSTED_PROXIES": "10.0.0.0/33"})
    env = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "6.6.6.6"}
    assert resolve_client_ip(env, config.client_ip_policy).address == "10.0.0.5"
    assert resolve_client_ip(env, Config().client_ip_policy).address == "6.6.6.6"  # unset: Sqreen mode


def test_arguments_beat_the_environment(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQREEN_MAX_EVENT_PROPERTIES", "5")
    monkeypatch.setenv("SQREEN_IP_HEADER", "x-from-env")
    config = sqreen_otel.configure(tracer_provider=otel.provider, exporter=otel.ours, max_event_properties=7)
    assert config.max_event_properties == 7
    assert config.ip_header == "x-from-env"
    assert sqreen_otel.current_config() is config


def test_bad_arguments_raise_at_configure_time(otel: Otel) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_props'"):
        sqreen_otel.configure(max_props=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_event_properties"):
        sqreen_otel.configure(max_event_properties="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_event_properties"):
        sqreen_otel.configure(max_event_properties=0)
    with pytest.raises(ValueError, match="unknown exporter"):
        sqreen_otel.configure(exporter="carrier-pigeon")
    with pytest.raises(ValueError, match="ingestion_url"):
        sqreen_otel.configure(exporter="http")
    with pytest.raises(ValueError, match="invalid regular expression"):
        sqreen_otel.configure(strip_sensitive_key_regexp="(")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        sqreen_otel.configure(user_id_hmac_key="short")
    with pytest.raises(ValueError, match="trusted_proxies"):
        sqreen_otel.configure(trusted_proxies=["10.0.0.0/33"])


def test_configure_is_idempotent_per_provider(otel: Otel) -> None:
    for _ in range(3):
        sqreen_otel.configure(tracer_provider=otel.provider, exporter=otel.ours)
    processors = otel.provider._active_span_processor._span_processors  # counting installs
    assert sum(isinstance(p, sqreen_otel.SqreenSpanProcessor) for p in processors) == 1
    assert not isinstance(otel.provider.sampler, sqreen_otel.SecurityEventSampler)  # the host's, untouched


def test_configure_without_an_sdk_provider_warns_and_does_not_crash(
    sqreen_logs: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    sqreen_otel.configure(tracer_provider=NoOpTracerProvider())
    assert any("needs an OpenTelemetry SDK TracerProvider" in r.getMessage() for r in sqreen_logs.records)
    assert sqreen_otel.track("still.fine") is False  # no span can record it, and the loss is counted
    assert sqreen_otel.stats()["events_lost_no_sdk"] == 1
    assert any("no OpenTelemetry SDK tracer provider" in r.getMessage() for r in sqreen_logs.records)


BAD_VALUES = {
    "SQREEN_DISABLE": "maybe",
    "SQREEN_IP_HEADER": "bad header",
    "SQREEN_TRUSTED_PROXIES": "nope/99",
    "SQREEN_MAX_EVENT_PROPERTIES": "many",
    "SQREEN_LOG_LEVEL": "chatty",
    "SQREEN_EXPORTER": "carrier-pigeon",
    "SQREEN_HEARTBEAT_DELAY": "soon",
    "SQREEN_BATCH_SIZE": "0",
    "SQREEN_MAX_QUEUE_LENGTH": "-5",
    "SQREEN_GRACEFUL_TIMEOUT": "forever",
    "SQREEN_STRIP_SENSITIVE_DATA": "perhaps",
    "SQREEN_STRIP_SENSITIVE_KEY_REGEXP": "(",
    "SQREEN_STRIP_SENSITIVE_VALUE_REGEXP": ")",
    "SQREEN_USER_ID_HMAC_KEY": "short-secret",
    "SQREEN_INGESTION_URL": "not a url",
    "SQREEN_APP_NAME": "bad\x07name",
}


def test_importing_with_bad_environment_values_never_crashes(tmp_path: Path) -> None:
    code = "import sqreen_otel; print(sqreen_otel.track('x'), sqreen_otel.current_config().exporter)"
    completed = run_python(["-c", code], tmp_path, BAD_VALUES)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "('local',)"]
    security = {"SQREEN_IP_HEADER", "SQREEN_TRUSTED_PROXIES", "SQREEN_STRIP_SENSITIVE_DATA",
                "SQREEN_STRIP_SENSITIVE_KEY_REGEXP", "SQREEN_STRIP_SENSITIVE_VALUE_REGEXP",
                "SQREEN_USER_ID_HMAC_KEY"}  # fmt: skip
    assert completed.stderr.count("Ignoring SQREEN_") == len(BAD_VALUES) - len(security)
    assert completed.stderr.count("failing closed") == len(security)
    assert "short-secret" not in completed.stderr


def test_public_api_is_exactly_the_facade() -> None:
    public = {name for name in dir(sqreen_otel) if not name.startswith("_")} - {"exporters", "wsgi"}
    assert sorted(sqreen_otel.__all__) == sorted(public | {"__version__"})
    assert all(getattr(sqreen_otel, name) is not None for name in sqreen_otel.__all__)
