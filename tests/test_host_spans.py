"""What sqreen-otel puts on the host's spans (shipped by the host's own exporters, unscrubbed).

Without a key: raw identifiers and traits (documented in docs/events.md), unless
``SQREEN_USER_ON_HOST_SPANS=false``. With ``SQREEN_USER_ID_HMAC_KEY``: only pseudonyms, the same
ones our exporters ship. An invalid key withholds identifiers everywhere (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from _support import Otel, make_otel, run_python
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel import ScrubbingSpanExporter
from sqreen_otel._scrubbing.scrubber import Scrubber
from sqreen_otel._shipping.event_model import scrubbed_events

KEY = "k" * 32
EMAIL = "ann@example.com"


def everything(span: ReadableSpan) -> str:
    """Every attribute and event attribute of a span, as text."""
    parts: list[Any] = [dict(span.attributes or {})]
    parts += [(event.name, dict(event.attributes or {})) for event in span.events]
    return repr(parts)


def request(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
        sqreen_otel.identify({"email": EMAIL, "uid": 42}, traits={"plan": "pro", "phone": "+33600000000"})
        sqreen_otel.from_context().for_user({"email": EMAIL}).track_auth_success()
        sqreen_otel.track("profile.viewed")


def pseudonym(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_without_a_key_identifiers_and_traits_are_on_the_request_span_as_documented() -> None:
    with make_otel() as otel:
        request(otel)
    (span,) = otel.app_spans()
    attributes = dict(span.attributes or {})
    assert {
        k: v for k, v in attributes.items() if k.startswith(("user.", "sqreen.user.", "sqreen.traits."))
    } == {
        "user.email": EMAIL,
        "user.id": "42",
        "sqreen.user.email": EMAIL,
        "sqreen.user.uid": 42,
        "sqreen.traits.plan": "pro",
        "sqreen.traits.phone": "+33600000000",
    }


def test_with_a_key_host_spans_carry_only_the_pseudonyms_our_exporters_ship() -> None:
    with make_otel(user_id_hmac_key=KEY) as otel:
        request(otel)
        (ours,) = otel.exported()
    (span,) = otel.app_spans()
    host = everything(span)
    assert EMAIL not in host and "+33600000000" not in host and "'pro'" not in host
    attributes = dict(span.attributes or {})
    assert attributes["sqreen.user.email"] == pseudonym(EMAIL)
    assert attributes["sqreen.user.uid"] == pseudonym("42")  # 42 and "42" are one user
    assert attributes["user.hash"] == pseudonym("42")  # user.id comes first, as in the scrubber
    assert "user.email" not in attributes and "user.id" not in attributes
    shipped = scrubbed_events([ours], Scrubber.from_config(sqreen_otel.current_config()))
    login = next(event for event in shipped if event.name == "users.login.success")
    assert login.user_identifiers == {"email": pseudonym(EMAIL)}
    (login_on_host,) = [dict(e.attributes or {}) for e in span.events if e.name == "users.login.success"]
    assert login_on_host["sqreen.user.email"] == pseudonym(EMAIL)  # the same value on both sides


def test_the_switch_keeps_identifiers_off_host_spans_but_not_out_of_our_exports() -> None:
    with make_otel(user_on_host_spans=False) as otel:
        request(otel)
        (ours,) = otel.exported()
    (span,) = otel.app_spans()
    host = everything(span)
    assert EMAIL not in host and "sqreen.user." not in host and "sqreen.traits." not in host
    assert "user.id" not in host
    shipped = scrubbed_events([ours], Scrubber.from_config(sqreen_otel.current_config()))
    assert {e.name: e.user_identifiers for e in shipped}["users.login.success"] == {"email": EMAIL}


@pytest.mark.parametrize("value", ["short", ""])
def test_an_invalid_key_withholds_identifiers_everywhere(tmp_path: Path, value: str) -> None:
    code = """
import json, sqreen_otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
provider = TracerProvider(); host = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(host))
sqreen_otel.configure(tracer_provider=provider, exporter="local")
with provider.get_tracer("t").start_as_current_span("POST /login", kind=SpanKind.SERVER):
    sqreen_otel.auth_track(True, email="ann@example.com")
assert sqreen_otel.flush(5)
print(repr([(dict(s.attributes), [dict(e.attributes) for e in s.events]) for s in host.get_finished_spans()]))
"""
    store = tmp_path / "events.db"
    env = {"SQREEN_USER_ID_HMAC_KEY": value, "SQREEN_LOCAL_STORE": str(store)}
    completed = run_python(["-c", code], tmp_path, env)
    assert completed.returncode == 0, completed.stderr
    if value == "":  # empty means unset: identifiers are shipped as documented
        assert EMAIL in completed.stdout
        return
    assert "failing closed" in completed.stderr and value not in completed.stderr
    assert EMAIL not in completed.stdout  # host spans
    assert EMAIL.encode() not in b"".join(path.read_bytes() for path in tmp_path.glob("events.db*"))


def test_the_recommended_host_wrapper_does_not_bring_hidden_identifiers_back() -> None:
    """ScrubbingSpanExporter in front of the host's exporter shows what is on the host's span."""
    provider = TracerProvider(shutdown_on_exit=False)
    wrapped = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(wrapped)))
    sqreen_otel.configure(tracer_provider=provider, exporter="none", user_on_host_spans=False)
    with provider.get_tracer("t").start_as_current_span("POST /login", kind=SpanKind.SERVER):
        sqreen_otel.auth_track(False, email=EMAIL)
    (span,) = wrapped.get_finished_spans()
    assert EMAIL not in everything(span) and "sqreen.user." not in everything(span)
