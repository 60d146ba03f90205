"""Secret planting: known secrets in every position; none appears in any exporter's output bytes."""

from __future__ import annotations

import gzip
import io
import string
import tempfile
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

import sqreen_otel
from sqreen_otel import ScrubbingSpanExporter
from sqreen_otel._outcome import SUCCESS, ExportOutcome
from sqreen_otel._scrub import Scrubber
from sqreen_otel.exporters import ConsoleEventExporter, LocalStoreExporter, SqreenHttpExporter

SECRETS = st.text(string.ascii_letters + string.digits, min_size=16, max_size=24)
SENSITIVE_KEYS = st.sampled_from(
    ["password", "user_password", "Passwd", "secret", "client_secret", "api_key", "apiKey", "access_token",
     "token", "Authorization", "cookie", "session_id", "credentials", "private_key", "jwt"]
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
    return {"secret": secret, "key": key, "card": card, "in_text": in_text, "holder": draw(HOLDERS)}


def plant(otel: Otel, p: dict[str, Any]) -> None:
    secret, key = p["secret"], p["key"]
    attributes = {
        "url.query": f"q=1&{key}={secret}&sig={secret}",
        "http.target": f"/reset?password={secret}",
        "url.full": f"https://ann:{secret}@shop.example/p?api_key={secret}",
        "http.request.header.authorization": (f"Bearer {secret}",),
        "http.request.header.cookie": (f"sid={secret}",),
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
                p["holder"]: f"paid with {p['card']} ({p['in_text']})",
                "card": p["card"],
            }
        ).with_user_identifiers({"uid": "u1", key: secret})
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
    digits = p["card"].replace(" ", "").replace("-", "")
    with tempfile.TemporaryDirectory() as folder:
        produced = outputs(raw, Path(folder) / "events.db")
    for name, data in produced.items():
        assert p["secret"].encode() not in data, name
        assert p["card"].encode() not in data, name
        assert digits.encode() not in data, name
        assert b"checkout" in data, name  # the events themselves are shipped
