"""Scrubbing: key rule, value rule, URLs, types, configuration, pseudonymisation, copies."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from _support import Otel, events_of, make_otel
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel import ScrubbingSpanExporter
from sqreen_otel._scrub import MASK, URL_MASK, Scrubber, luhn_valid
from sqreen_otel._scrubbing_exporter import scrub_span

CARD = "4111 1111 1111 1111"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "key",
    ["password", "user_password", "Passwd", "passphrase", "pwd", "client_secret", "Authorization", "api_key",
     "apiKey", "x-api-key", "access_token", "refresh_token", "token", "jwt", "cookie", "set-cookie",
     "session_id", "sessionid", "PHPSESSID", "connect.sid", "sid", "csrf_token", "_xsrf", "credentials",
     "private_key", "privatekey", "signature", "mysql_pwd"],
)  # fmt: skip
def test_sensitive_keys_match_case_insensitively_inside_longer_keys(key: str) -> None:
    assert Scrubber().is_sensitive_key(key)


@pytest.mark.parametrize(
    "key", ["email", "author", "president", "inside", "amount", "plan", "user_id", "country"]
)
def test_ordinary_keys_do_not_match(key: str) -> None:
    assert not Scrubber().is_sensitive_key(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"paid with {CARD} today", f"paid with {MASK} today"),
        ("paid with 4111-1111-1111-1111", f"paid with {MASK}"),
        ("378282246310005", MASK),  # 15-digit Amex
        ("4111 1111 1111 1112 (not Luhn)", "4111 1111 1111 1112 (not Luhn)"),
        ("order 1234567890123", "order 1234567890123"),  # 13 digits, not Luhn-valid
        ("call 0612345678", "call 0612345678"),
        ("Authorization: Bearer abcDEF123456.xyz", f"Authorization: {MASK}"),
        ("basic dXNlcjpwYXNzd29yZA==", MASK),
        (f"token {JWT}", f"token {MASK}"),
        ("key ghp_" + "A" * 36, f"key {MASK}"),
        ("AKIAIOSFODNN7EXAMPLE", MASK),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", MASK),
        ("login failed password=hunter2 for ann", f"login failed password={MASK} for ann"),
        ('{"api_key": "abc123"}', '{"api_key": ' + MASK + "}"),
        ("nothing to see", "nothing to see"),
    ],
)
def test_value_rule_redacts_only_the_matching_part(text: str, expected: str) -> None:
    assert Scrubber().scrub_text(text) == expected


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_query_strings_keep_keys_and_urls_stay_parseable() -> None:
    scrubber = Scrubber()
    card = CARD.replace(" ", "+")
    query = f"user=ann&password=s3cret&sig=abc&X-Amz-Signature=def&SIG=keep&card={card}&next=%2Fhome"
    assert scrubber.scrub_query(query) == (
        f"user=ann&password={URL_MASK}&sig={URL_MASK}&X-Amz-Signature={URL_MASK}&SIG=keep"
        f"&card={URL_MASK.replace('%20', '+')}&next=%2Fhome"
    )
    assert scrubber.scrub_target("/login?token=abc&x=1") == f"/login?token={URL_MASK}&x=1"
    assert scrubber.scrub_url("https://bob:pa55@shop.example/p?AWSAccessKeyId=A&q=1#f") == (
        f"https://{URL_MASK}:{URL_MASK}@shop.example/p?AWSAccessKeyId={URL_MASK}&q=1#f"
    )


def test_attribute_types_stay_valid_for_otlp() -> None:
    scrubbed = Scrubber().scrub_attributes(
        {
            "sqreen.properties.password": 1234,
            "sqreen.properties.pin_token": True,
            "sqreen.properties.tokens": ("a", "b"),
            "sqreen.properties.api_key": (1, 2),
            "sqreen.properties.amount": 12,
            "http.request.header.authorization": ("Bearer xyz12345678",),
            "http.request.header.user_agent": ("curl/8",),
            "app.config": {"db": {"password": "x", "host": "h"}},
        }
    )
    assert scrubbed == {
        "sqreen.properties.password": MASK,
        "sqreen.properties.pin_token": MASK,
        "sqreen.properties.tokens": (MASK, MASK),
        "sqreen.properties.api_key": MASK,
        "sqreen.properties.amount": 12,
        "http.request.header.authorization": (MASK,),
        "http.request.header.user_agent": ("curl/8",),
        "app.config": {"db": {"password": MASK, "host": "h"}},
    }


def test_our_own_bookkeeping_attributes_are_not_key_matched() -> None:
    attributes = {
        "sqreen.event.type": "auth",
        "sqreen.auth.success": True,
        "sqreen.client_ip.source": "x-real-ip",
    }
    assert Scrubber().scrub_attributes(attributes) == attributes


def test_configuration_of_the_rules() -> None:
    off = Scrubber(enabled=False)
    assert off.scrub_attributes({"sqreen.properties.password": "x"}) == {"sqreen.properties.password": "x"}
    keys_only = Scrubber(keys=["pin"], key_regexp="", value_regexp="")
    assert keys_only.is_sensitive_key("card.pin") and not keys_only.is_sensitive_key("password")
    assert keys_only.scrub_text(CARD) == CARD  # an empty value rule is off
    custom = Scrubber(value_regexp=r"ID-\d+")
    assert custom.scrub_text(f"ID-42 {CARD}") == f"{MASK} {CARD}"  # replaces the built-in patterns


def test_hmac_pseudonymises_identifiers() -> None:
    key = "k" * 32
    scrubbed = Scrubber(hmac_key=key).scrub_attributes(
        {
            "sqreen.user.email": "ann@example.com",
            "user.email": "ann@example.com",
            "user.id": "42",
            "other": "x",
        }
    )
    expected = hmac.new(key.encode(), b"ann@example.com", hashlib.sha256).hexdigest()
    assert scrubbed["sqreen.user.email"] == expected
    assert scrubbed["user.hash"] == hmac.new(key.encode(), b"42", hashlib.sha256).hexdigest()
    assert "user.email" not in scrubbed and "user.id" not in scrubbed
    assert scrubbed["other"] == "x"
    other_key = Scrubber(hmac_key="z" * 32).scrub_attributes({"sqreen.user.email": "ann@example.com"})
    assert other_key["sqreen.user.email"] != expected  # keyed: not a plain hash


def _request_span(otel: Otel) -> None:
    attributes: dict[str, Any] = {
        "url.query": "password=s3cret&q=1",
        "http.target": "/login?password=s3cret&q=1",
        "http.request.header.cookie": ("session=abc",),
    }
    with otel.tracer.start_as_current_span(f"GET /reset/{JWT}", kind=SpanKind.SERVER, attributes=attributes):
        sqreen_otel.track("login", properties={"password": "s3cret", "note": f"card {CARD}"})


def test_our_pipeline_ships_scrubbed_copies_and_never_touches_the_app_span(otel: Otel) -> None:
    _request_span(otel)
    (app_span,) = otel.app_spans()  # the host's pipeline: untouched (wrap it to scrub it too)
    assert dict(app_span.attributes or {})["url.query"] == "password=s3cret&q=1"
    (ours,) = otel.exported()
    attributes = dict(ours.attributes or {})
    assert attributes["url.query"] == f"password={URL_MASK}&q=1"
    assert attributes["http.target"] == f"/login?password={URL_MASK}&q=1"
    assert attributes["http.request.header.cookie"] == (MASK,)
    assert ours.name == f"GET /reset/{MASK}"
    ((_, event),) = events_of(ours)
    assert event["sqreen.properties.password"] == MASK
    assert event["sqreen.properties.note"] == f"card {MASK}"


def test_scrubbing_span_exporter_preserves_dropped_counts() -> None:
    with make_otel(span_limits=SpanLimits(max_span_attributes=2, max_events=1)) as otel:
        with otel.tracer.start_as_current_span("s", attributes={"a": 1, "b": 2, "password": "x"}) as span:
            span.add_event("e1")
            span.add_event("e2", {"token": "t"})
        (original,) = otel.app_spans()
        copy = scrub_span(Scrubber(), original)
    assert (copy.dropped_attributes, copy.dropped_events) == (
        original.dropped_attributes,
        original.dropped_events,
    )
    assert (copy.dropped_attributes, copy.dropped_events) == (1, 1)
    assert dict(copy.attributes or {}) == {"b": 2, "password": MASK}
    assert dict(original.attributes or {})["password"] == "x"


def test_scrubbing_span_exporter_wraps_any_exporter(otel: Otel) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    inner = InMemorySpanExporter()
    _request_span(otel)
    spans: list[ReadableSpan] = list(otel.app_spans())
    ScrubbingSpanExporter(inner).export(spans)
    (exported,) = inner.get_finished_spans()
    assert dict(exported.attributes or {})["url.query"] == f"password={URL_MASK}&q=1"
