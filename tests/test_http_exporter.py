"""The http exporter against a real receiver on 127.0.0.1: format, retries, rejections."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from _receivers import Receiver, Reply, running
from _support import Otel, make_otel
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._scrubbing.scrubber import MASK
from sqreen_otel._shipping.pipeline import Backoff
from sqreen_otel.exporters import SqreenHttpExporter


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sqreen_otel._shipping.drain.Backoff", lambda: Backoff(initial=0.05, cap=0.2))


def configured(receiver: Receiver, **settings: object) -> Otel:
    """A host provider plus sqreen_otel shipping to ``receiver`` with the http exporter."""
    otel = make_otel()
    sqreen_otel.configure(
        tracer_provider=otel.provider,
        exporter="http",
        ingestion_url=receiver.url,
        token="test-token",
        app_name="shop",
        heartbeat_delay=3600,
        **settings,  # type: ignore[arg-type]
    )
    return otel


def track_login(otel: Otel, user: str = "ann") -> None:
    attributes = {
        "http.request.method": "POST",
        "url.path": "/login",
        "url.query": f"user={user}&password=hunter2",
    }
    with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER, attributes=attributes):
        sqreen_otel.auth_track(False, username=user)
        sqreen_otel.track("card.added", properties={"last4": "1111", "note": "card 4111 1111 1111 1111"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running(Receiver()) as started:
        yield started


def test_points_in_sqreen_signal_format(receiver: Receiver) -> None:
    with configured(receiver) as otel:
        track_login(otel)
        assert sqreen_otel.flush(10)
    (request,) = receiver.received
    assert request.headers["x-api-key"] == "test-token"
    assert request.headers["x-app-name"] == "shop"
    assert request.headers["content-encoding"] == "gzip"
    failure, card = json.loads(request.body)
    assert failure["type"] == "point"
    assert failure["signal_name"] == "sq.sdk.users.login.failure"
    assert failure["source"] == "sqreen:sdk:auth_track"
    assert failure["payload_schema"] == "track_event/2020-01-01T00:00:00.000Z"
    assert failure["payload"]["user_identifiers"] == {"username": "ann"}
    assert failure["context"] == {
        "client_ip": None,
        "user_agent": None,
        "path": "/login",
        "verb": "POST",
        "parameters": {"user": ["ann"], "password": [MASK]},
    }
    assert failure["actor"]["identifiers"] == {"username": "ann"}
    assert card["payload"]["properties"] == {"last4": "1111", "note": f"card {MASK}"}
    assert "hunter2" not in request.body.decode()


@pytest.mark.parametrize(
    "failure",
    [
        Reply(429, {"Retry-After": "1"}),
        Reply(503),
        Reply(500),
        Reply(200, hang=2.0),  # longer than the exporter's timeout: a hang
    ],
    ids=["429-retry-after", "503", "500", "hang"],
)
def test_retryable_failures_keep_the_batch_until_it_is_delivered(
    failure: Reply, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SqreenHttpExporter.__init__

    def short_timeout(
        self: SqreenHttpExporter, url: str, token: str | None = None, app_name: str | None = None
    ) -> None:
        original(self, url, token, app_name, timeout=0.5)

    monkeypatch.setattr(SqreenHttpExporter, "__init__", short_timeout)
    with running(Receiver([failure, failure])) as receiver, configured(receiver) as otel:
        track_login(otel)
        deadline = time.monotonic() + 20
        while not receiver.received and time.monotonic() < deadline:
            sqreen_otel.flush(1.0)
        assert len(receiver.received) == 1
        assert len(json.loads(receiver.received[0].body)) == 2
        if failure.status == 429:
            first, second = receiver.attempts[:2]
            assert second - first >= 0.95  # Retry-After: 1
    stats = sqreen_otel.stats()
    assert stats["events_exported.http"] == 2
    assert stats["export_retries.http"] >= 2


def test_a_rejected_batch_is_split_to_drop_only_the_events_at_fault() -> None:
    """400 for a batch of two, then for each half: both dropped alone, counted; the next batch
    goes through; flush() says False while something was dropped."""
    with running(Receiver([Reply(400)] * 3)) as receiver, configured(receiver) as otel:
        track_login(otel)
        assert not sqreen_otel.flush(5.0)
        track_login(otel, "bob")
        assert sqreen_otel.flush(5.0)
        (delivered,) = receiver.received
    assert [point["payload"].get("user_identifiers") for point in json.loads(delivered.body)] == [
        {"username": "bob"},
        {},
    ]
    assert sqreen_otel.stats()["events_dropped.rejected.http"] == 2


def test_one_poisoned_event_never_blocks_the_rest() -> None:
    """The destination refuses any batch holding one request's events (400): they alone are dropped."""
    receiver = Receiver(reject_containing=b"poison")
    with running(receiver), configured(receiver, batch_size=100) as otel:
        for user in ["u1", "u2", "poison", "u3", "u4"]:
            track_login(otel, user)
        assert not sqreen_otel.flush(10.0)
    points = [point for r in receiver.received for point in json.loads(r.body)]
    assert len(points) == 8  # both events of the four other requests
    assert {point["context"]["parameters"]["user"][0] for point in points} == {"u1", "u2", "u3", "u4"}
    assert sqreen_otel.stats()["events_dropped.rejected.http"] == 2  # the poisoned request's two


def test_413_splits_the_batch_and_drops_only_an_event_too_large_alone() -> None:
    receiver = Receiver(max_body=2500)  # answers 413 to bodies over 2.5 KB (decompressed)
    with running(receiver), configured(receiver) as otel:
        for index in range(12):
            track_login(otel, f"user{index}")
        with otel.tracer.start_as_current_span("POST /big", kind=SpanKind.SERVER):
            sqreen_otel.track("big", properties={"blob": "x" * 4000})
        assert not sqreen_otel.flush(10.0)  # the big one could not be delivered
    delivered = [point for r in receiver.received for point in json.loads(r.body)]
    assert len(delivered) == 24  # every other event, in batches the destination accepts
    assert sqreen_otel.stats()["events_dropped.too_large.http"] == 1


@pytest.mark.parametrize("status", [301, 401, 403])
def test_a_refusal_keeps_the_events_for_later(status: int) -> None:
    """A redirect or an authentication failure is a configuration problem, not bad data."""
    with running(Receiver([Reply(status)])) as receiver, configured(receiver) as otel:
        track_login(otel)
        assert sqreen_otel.flush(5.0)  # durably queued: not delivered, not lost
        assert receiver.received == []
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            sqreen_otel.flush(1.0)
        (delivered,) = receiver.received
    assert len(json.loads(delivered.body)) == 2
    assert not any(name.startswith("events_dropped") for name in sqreen_otel.stats())
