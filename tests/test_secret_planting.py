"""Secret planting: known secrets in every position; none appears in any exporter's output bytes."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import string
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _support import Otel, make_otel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from werkzeug.datastructures import Headers, ImmutableMultiDict, MultiDict

import sqreen_otel
from sqreen_otel import ScrubbingSpanExporter
from sqreen_otel._scrubbing.scrubber import Scrubber
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome
from sqreen_otel.exporters import ConsoleEventExporter, LocalStoreExporter, SqreenHttpExporter

SECRETS = st.text(string.ascii_letters + string.digits, min_size=16, max_size=24)
SENSITIVE_KEYS = st.sampled_from(
    ["password", "user_password", "Passwd", "secret", "client_secret", "api_key", "apiKey", "access_token",
     "token", "Authorization", "cookie", "session_id", "credentials", "private_key", "jwt", "pass", "auth",
     "access_key", "X-Auth-Key", "pin", "cvv", "otp", "ssn", "card_number", "cardNumber"]
)  # fmt: skip
HOLDERS = st.sampled_from(["note", "comment", "message", "detail", "query"])


def luhn_card(digits15: str, style: int) -> str:
    total = 0
    for index, char in enumerate(reversed(digits15)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    number = digits15 + str((10 - total % 10) % 10)
    separator = ["", " ", "-"][style]
    return separator.join(number[i : i + 4] for i in range(0, 16, 4))


@st.composite
def plantings(draw: st.DrawFn) -> dict[str, Any]:
    secret = draw(SECRETS)
    key = draw(SENSITIVE_KEYS)
    card = luhn_card(draw(st.text("0123456789", min_size=15, max_size=15)), draw(st.integers(0, 2)))
    around = draw(st.sampled_from(["{} 12/25", "{} 12/25 123", "{} 123", "42 {}", "No 7 {} exp 1225", "{}"]))
    in_text = draw(
        st.sampled_from(
            [
                f"password={secret}",
                f"Bearer {secret}",
                f"eyJhbGciOiJIUzI1NiJ9.eyJ{secret}.c2ln",
                f"token: {secret}",
            ]
        )
    )
    return {
        "secret": secret,
        "key": key,
        "card": card,
        "card_in_text": around.format(card),
        "in_text": in_text,
        "holder": draw(HOLDERS),
    }


@dataclasses.dataclass
class Credentials:
    user: str
    secret_value: str


def plant(otel: Otel, p: dict[str, Any]) -> None:
    secret, key = p["secret"], p["key"]
    digits = p["card"].replace(" ", "").replace("-", "")
    attributes = {
        "url.query": f"q=1&{key}={secret}&sig={secret}&{urllib.parse.quote(key)}%3D{secret}",
        "http.target": f"/reset?password={secret}",
        "url.full": f"https://ann:{secret}@shop.example/p?api_key={secret}",
        "http.request.header.authorization": (f"Bearer {secret}",),
        "http.request.header.cookie": (f"sid={secret}",),
        "http.response.header.location": (f"https://cdn.example/f?sig={secret}",),
        "user_agent.original": f"agent {p['in_text']}",
    }
    with otel.tracer.start_as_current_span(
        "POST /login", kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        sqreen_otel.identify({"uid": "u1"}, traits={key: secret, "bio": p["in_text"]})
        sqreen_otel.from_context().track_event("checkout").with_properties(
            {
                "billing": {key: secret},  # nested under an ordinary key
                key: {"inner": secret, "list": [secret, secret]},  # a whole subtree under a sensitive key
                p["holder"]: f"paid with {p['card_in_text']} ({p['in_text']})",
                "card": p["card"],
                "card_int": int(digits),
                "deep": {"a": {"b": {"c": {"d": {key: secret}}}}},  # past the flattening depth
                "pairs": [("user", "ann"), (key, secret)],  # list(request.form.items())
                "headers": Headers([("Cookie", f"sid={secret}"), ("X-Auth-Key", secret), (key, secret)]),
                "form": MultiDict([("user", "ann"), (key, secret), (key, secret)]),
                "frozen": ImmutableMultiDict([(key, secret)]),
                f"note {key}={secret}": 1,  # a secret in a key
                "object": Credentials("ann", secret),
                "repr": repr(Credentials("ann", secret)).replace("secret_value", key),
            }
        ).with_user_identifiers({"uid": "u1", key: secret})
        sqreen_otel.track(  # at most 16 properties an event: the shapes are split over events
            "shapes",
            properties={
                "form_text": str(ImmutableMultiDict([("user", "ann"), (key, secret)])),
                "headers_text": repr(Headers([(key, secret)])),
                "json_text": json.dumps({key: [secret, {"nested": secret}], "user": "ann"}),
                "yaml_text": f"{key}:\n  {secret}\nuser: ann",
                "dsn": f"redis://:{secret}@cache:6379/0",
                "sas": f"https://acct.blob.core.windows.net/c/f?sv=1&sig={secret}",
                "api": {"key": secret},
                "asgi_headers": [(key.encode(), secret.encode())],
                "a" * 121: {key: secret},  # its flattened key is cut past the limit
            },
        )
        sqreen_otel.track(
            "form.submitted", properties=list(MultiDict([("user", "ann"), (key, secret)]).items())
        )
        sqreen_otel.track("headers.seen", properties=Headers([("Cookie", f"sid={secret}"), (key, secret)]))
        sqreen_otel.track(
            "login", properties={"attempt": 2, "detail": p["in_text"]}, user_identifiers={key: secret}
        )
        span.record_exception(ValueError(f"bad login password={secret}"))


class CapturingHttpExporter(SqreenHttpExporter):
    """The real http exporter, its wire bytes kept instead of sent (HTTP itself: test_http_exporter)."""

    def __init__(self) -> None:
        super().__init__("https://ingest.invalid/batches", token="t", app_name="a")
        self.sent: list[bytes] = []

    def _send(self, body: bytes) -> ExportOutcome:
        self.sent.append(gzip.decompress(body))
        return SUCCESS


class OtlpBytes(SpanExporter):
    """What the official OTLP exporter puts on the wire: the official protobuf encoding."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sent.append(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


def outputs(raw: Sequence[ReadableSpan], store: Path) -> dict[str, bytes]:
    """Each exporter's output bytes for the raw spans, through the scrubbing the pipeline uses."""
    http, otlp, console = CapturingHttpExporter(), OtlpBytes(), io.StringIO()
    local = LocalStoreExporter(str(store))
    for exporter in (http, otlp, ConsoleEventExporter(console), local):
        assert ScrubbingSpanExporter(exporter, Scrubber()).export(raw) is SpanExportResult.SUCCESS
    local.shutdown()
    files = b"".join(path.read_bytes() for path in store.parent.glob(store.name + "*"))
    return {
        "http": b"".join(http.sent),
        "otlp": b"".join(otlp.sent),
        "console": console.getvalue().encode(),
        "local (database files)": files,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=plantings())
def test_no_planted_secret_reaches_any_exporter(p: dict[str, Any]) -> None:
    with make_otel() as otel:
        plant(otel, p)
        raw = otel.app_spans()  # the spans as recorded, secrets included
    assert raw and any(span.events for span in raw)
    (shapes,) = [event for span in raw for event in span.events if event.name == "shapes"]
    assert "sqreen.event.dropped_properties" not in (shapes.attributes or {})  # every shape was shipped
    digits = p["card"].replace(" ", "").replace("-", "")
    with tempfile.TemporaryDirectory() as folder:
        produced = outputs(raw, Path(folder) / "events.db")
    for name, data in produced.items():
        assert p["secret"].encode() not in data, name
        assert p["card"].encode() not in data, name
        assert digits.encode() not in data, name
        for event in (b"checkout", b"shapes", b"form.submitted", b"headers.seen"):
            assert event in data, name


def test_a_custom_key_regexp_matches_whatever_the_case(tmp_path: Path) -> None:
    with make_otel(strip_sensitive_key_regexp="internal_ref") as otel:
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("x", properties={"Internal_REF": "S3cretValue42", "ok": 1})
        raw = otel.app_spans()
        scrubber = Scrubber.from_config(sqreen_otel.current_config())
    http, local = CapturingHttpExporter(), LocalStoreExporter(str(tmp_path / "e.db"))
    for exporter in (http, local):
        ScrubbingSpanExporter(exporter, scrubber).export(raw)
    local.shutdown()
    files = b"".join(path.read_bytes() for path in tmp_path.glob("e.db*"))
    for data in (b"".join(http.sent), files):
        assert b"S3cretValue42" not in data
        assert b'"ok":1' in data
