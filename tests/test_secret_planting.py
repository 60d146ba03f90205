"""Secret planting: known secrets in every position; none appears in any exporter's output bytes."""

from __future__ import annotations

import gzip
import io
import json
import string
from collections.abc import Sequence
from typing import Any

from _support import Otel, make_otel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqreen_otel.exporters import ConsoleEventExporter
from sqreen_otel.exporters.http import encode_points
from sqreen_otel.exporters.local import rows

import sqreen_otel

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


def outputs(spans: Sequence[ReadableSpan]) -> dict[str, bytes]:
    console = io.StringIO()
    ConsoleEventExporter(console).export(spans)
    return {
        "http": gzip.decompress(encode_points(spans)[1]),
        "otlp": encode_spans(spans).SerializeToString(),
        "local": json.dumps(rows(spans)).encode(),
        "console": console.getvalue().encode(),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=plantings())
def test_no_planted_secret_reaches_any_exporter(p: dict[str, Any]) -> None:
    with make_otel() as otel:
        plant(otel, p)
        shipped = otel.exported()  # what our pipeline hands its exporters: scrubbed copies
    assert shipped and any(span.events for span in shipped)
    digits = p["card"].replace(" ", "").replace("-", "")
    for name, data in outputs(shipped).items():
        assert p["secret"].encode() not in data, name
        assert p["card"].encode() not in data, name
        assert digits.encode() not in data, name
        assert b"checkout" in data, name  # the events themselves are shipped
