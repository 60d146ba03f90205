"""Scrubbing: key rule, value rule, URLs, types, configuration, pseudonymisation, copies."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from typing import Any

import pytest
from _support import Otel, events_of, make_otel
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from werkzeug.datastructures import Headers, ImmutableMultiDict

import sqreen_otel
from sqreen_otel import ScrubbingSpanExporter
from sqreen_otel._scrubbing.scrubber import MASK, URL_MASK, Scrubber, luhn_valid
from sqreen_otel._shipping.scrubbing_exporter import scrub_span

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
        "sqreen.properties.api_key": (MASK, MASK),
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


def test_hmac_pseudonymises_the_apps_own_user_attributes() -> None:
    """Ours are pseudonymised where they are written (test_host_spans); the app's own
    semantic-convention user attributes give way to ``user.hash`` in what is shipped."""
    key = "k" * 32
    scrubbed = Scrubber(hmac_key=key).scrub_attributes(
        {"user.email": "ann@example.com", "user.id": "42", "other": "x"}
    )
    assert scrubbed == {"user.hash": hmac.new(key.encode(), b"42", hashlib.sha256).hexdigest(), "other": "x"}
    other_key = Scrubber(hmac_key="z" * 32).scrub_attributes({"user.id": "42"})
    assert other_key["user.hash"] != scrubbed["user.hash"]  # keyed: not a plain hash


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
    inner = InMemorySpanExporter()
    _request_span(otel)
    spans: list[ReadableSpan] = list(otel.app_spans())
    ScrubbingSpanExporter(inner).export(spans)
    (exported,) = inner.get_finished_spans()
    assert dict(exported.attributes or {})["url.query"] == f"password={URL_MASK}&q=1"


# -- the review's bypasses, each as a class -----------------------------------------------------

PAN = "4111111111111111"
AMEX = "378282246310005"


@pytest.mark.parametrize(
    "text",
    [
        f"{PAN} 12/25",  # followed by an expiry
        f"{PAN} 12/25 123",  # ... and a CVV
        f"{PAN} 123",
        "4111 1111 1111 1111 1225 123",
        "4111-1111-1111-1111-123",
        f"12 {PAN}",  # preceded by a short number
        "No 42 4111 1111 1111 1111",
        f"{PAN}123",  # a CVV glued on
        f"{PAN}1225",  # an expiry glued on
        f"1234{PAN}99",  # buried in a longer number
        f"{AMEX} 1234",
        f"card:{PAN}",
        "٤١١١١١١١١١١١١١١١",  # Arabic-Indic digits
    ],
)
def test_card_numbers_are_found_inside_longer_digit_runs(text: str) -> None:
    scrubbed = Scrubber().scrub_text(text)
    assert MASK in scrubbed
    for digits in (PAN, AMEX, "4111 1111 1111 1111", "4111-1111-1111-1111"):
        assert digits not in scrubbed


@pytest.mark.parametrize("number", [int(PAN), int(AMEX), -int(PAN), float(PAN), int(PAN + "123")])
def test_card_numbers_given_as_numbers(number: float) -> None:
    assert Scrubber().scrub_value(number) == MASK
    assert Scrubber().scrub_value((1, number)) == ("1", MASK)  # the array stays homogeneous (all str)


@pytest.mark.parametrize("number", [42, 1764312345678, 2**40, 3.14])
def test_ordinary_numbers_stay_numbers(number: float) -> None:
    assert Scrubber().scrub_value(number) == number


@pytest.mark.parametrize(
    "key",
    ["pass", "user_pass", "pass2", "auth", "x-auth", "X-Auth-Key", "XAuthKey", "access_key",
     "aws_access_key_id", "accessKey", "pin", "card_pin", "userPIN", "cvv", "cvv2", "cvc", "otp", "otp_code",
     "totp", "ssn", "ssnLast4", "card_number", "cardNumber", "credit_card", "security_code",
     "pw", "Proxy-Authorization", "set-cookie", "x_csrftoken", "symfony", "user_session", "passcode"],
)  # fmt: skip
def test_the_documented_names_and_payment_secrets_are_sensitive(key: str) -> None:
    assert Scrubber().is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    ["passport", "passenger", "bypass", "compass", "author", "authority", "shipping", "spinner", "ping",
     "footprint", "classname", "inside", "panel", "company", "span", "display_name", "keyboard"],
)  # fmt: skip
def test_short_words_match_only_as_whole_words(key: str) -> None:
    assert not Scrubber().is_sensitive_key(key)


def test_a_custom_key_regexp_is_case_insensitive() -> None:
    scrubber = Scrubber(key_regexp=r"internal_ref")
    assert scrubber.is_sensitive_key("Internal_Ref") and scrubber.is_sensitive_key("INTERNAL_REF")
    assert scrubber.is_sensitive_key("internalRef")  # camelCase is split before matching
    assert not scrubber.is_sensitive_key("password")  # it replaces the built-in rule


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('{"password":"hunter2"}', "hunter2"),
        ("{'secret_key': 'hunter2'}", "hunter2"),
        ("Creds(user='a', api_key='hunter2')", "hunter2"),
        ("Cookie: sid=hunter2; theme=dark\r\n", "hunter2"),
        ("X-Auth-Key: hunter2\r\n", "hunter2"),
        ("Authorization: Digest username=a, response=hunter2", "hunter2"),
        ("PIN = hunter2", "hunter2"),
        ("next=/login?password=hunter2", "hunter2"),
        ("postgres://app:hunter2@db:5432/x", "hunter2"),
        ("token sk-" + "a1B2" * 10, "a1B2a1B2a1B2"),
        ("xoxb-1234567890-abcdefghij", "abcdefghij"),
    ],
)
def test_secrets_inside_text_shapes(text: str, secret: str) -> None:
    assert secret not in Scrubber().scrub_text(text)


def test_secrets_in_query_parameter_names() -> None:
    scrubber = Scrubber()
    for query in ("password%3Dhunter2", "q=1&password%3Dhunter2=", "a%3Dpassword%3Dhunter2"):
        scrubbed = scrubber.scrub_query(query)
        assert "hunter2" not in scrubbed and "hunter2" not in urllib.parse.unquote_plus(scrubbed), query
    assert scrubber.scrub_target("/p?password%3Dhunter2&q=1").endswith("&q=1")


def test_keys_are_data_too() -> None:
    assert Scrubber().scrub_mapping({f"note {PAN}": 1, "ok": 2}) == {f"note {MASK}": 1, "ok": 2}


def test_a_value_over_the_budget_is_redacted_whole() -> None:
    from sqreen_otel._scrubbing.scrubber import MAX_SCRUBBED_CHARS

    assert Scrubber().scrub_text("a" * (MAX_SCRUBBED_CHARS + 1)) == MASK
    assert sqreen_otel.stats()["values_redacted_oversized"] == 1
    assert Scrubber().scrub_text("a" * MAX_SCRUBBED_CHARS) == "a" * MAX_SCRUBBED_CHARS


# -- the second review's bypasses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (str(ImmutableMultiDict([("user", "ann"), ("password", "hunter2xyz")])), "hunter2xyz"),
        (repr(Headers([("X-Api-Key", "SECRETKEY123")])), "SECRETKEY123"),
        (str({"a": 1, "password": "hunter2xyz"}.items()), "hunter2xyz"),
        (str([(b"x-api-key", b"SECRETKEY123")]), "SECRETKEY123"),
        ('{"api_keys": ["k1", "SECRETKEY123"]}', "SECRETKEY123"),
        ('{"secret": {"id": 1, "value": "SECRETKEY123"}}', "SECRETKEY123"),
        ('{"password": "ab\\"SECRETKEY123"}', "SECRETKEY123"),
        ('{"Security Code": "987", "secret key": "SECRETKEY123"}', "SECRETKEY123"),
        ("redis://:SECRETKEY123@cache:6379/0", "SECRETKEY123"),
        ("user[password]=SECRETKEY123", "SECRETKEY123"),
        ("password=b'SECRETKEY123'", "SECRETKEY123"),
        ("{'password' => 'SECRETKEY123'}", "SECRETKEY123"),
        ("password:\n  SECRETKEY123\nother: 1", "SECRETKEY123"),
        ("see https://acct.blob.core.windows.net/c/f?sv=1&sig=SECRETKEY123", "SECRETKEY123"),
    ],
)
def test_pairs_in_reprs_json_urls_and_yaml(text: str, secret: str) -> None:
    assert secret not in Scrubber().scrub_text(text)


IDEMPOTENCE_CASES = [
    '{"password":"hunter2"}',
    "Cookie: sid=hunter2; theme=dark\r\n",
    "password=x " * 20,
    "user[password]=SECRETKEY123&next=1",
    "{'password' => 'SECRETKEY123'}",
    f"card {PAN} and password: hunter2",
    str(ImmutableMultiDict([("user", "ann"), ("password", "hunter2xyz")])),
]


@pytest.mark.parametrize("text", IDEMPOTENCE_CASES)
def test_scrubbing_twice_changes_nothing_more(text: str) -> None:
    """A copy scrubbed twice (our events are scrubbed when first read; a wrapper may scrub
    again) must not grow or change: a mask is never taken for a secret."""
    scrubber = Scrubber()
    once = scrubber.scrub_text(text)
    assert MASK in once
    assert scrubber.scrub_text(once) == once


def test_pairs_that_are_not_secrets_stay() -> None:
    text = "('plain', 'value'), ('x', 'y') other: 1 {\"name\": \"bob\"}"
    assert Scrubber().scrub_text(text) == text


@pytest.mark.parametrize("key", ["api.key", "user[password]", "pin1", "pincode", "cardCode", "ssh_key",
                                 "cc_number", "oauth_verifier", "code_verifier"])  # fmt: skip
def test_more_key_shapes(key: str) -> None:
    assert Scrubber().is_sensitive_key(key)


def test_percent_encoded_paths_are_decoded_for_scrubbing() -> None:
    scrubber = Scrubber()
    encoded = "/pay/4111%201111%201111%201111"
    for scrubbed in (
        scrubber.scrub_target(encoded + "?x=1"),
        scrubber.scrub_url("https://shop.example" + encoded),
        scrubber.scrub_attributes({"url.path": encoded})["url.path"],
    ):
        assert "4111" not in urllib.parse.unquote(scrubbed)
    assert scrubber.scrub_path("/a%20b/c") == "/a%20b/c"  # unchanged paths keep their encoding


def test_resource_attributes_are_scrubbed_in_span_copies() -> None:
    from opentelemetry.sdk.resources import Resource

    inner = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"process.command_args": ("app", "--password=hunter2")}))
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(inner, Scrubber())))
    provider.get_tracer("t").start_span("s").end()
    (span,) = inner.get_finished_spans()
    assert "hunter2" not in repr(dict(span.resource.attributes))
