"""The durable queue when several apps share one store, when it empties, upgrades, or is slow:
each app's events go to its own destinations only, once; no id is ever reused; one app's
bounds never silently delete another's queue; a lease outlives any request; a waiting
process does not spin; exits keep to the graceful timeout; a Retry-After binds the next
process; a lost batch makes flush() False."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from _receivers import Receiver, Reply, running
from _servers import TESTS
from _support import OpenStore, make_otel
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._cli.events import main as cli
from sqreen_otel._shipping import drain as _drain
from sqreen_otel._shipping import store as _store
from sqreen_otel._shipping.drain import Drainer, DrainSettings
from sqreen_otel._shipping.export_result import ExportStatus
from sqreen_otel._shipping.spool import Spool
from sqreen_otel.exporters._transport import HttpTransport
from sqreen_otel.exporters.http import SqreenHttpExporter

APP = TESTS / "queue_app.py"
SHOP = "https://collector.example/"


def row(key: str, properties: str = "{}", service: str = "shop") -> tuple[object, ...]:
    """A store row as ``store.event_row`` makes them."""
    return (key, 1, "e", "t", "{}", None, None, None, None, None, "{}", properties, "0", "0", service)


def points(receiver: Receiver) -> list[dict[str, object]]:
    return [point for item in receiver.received for point in json.loads(item.body)]


def run_of(point: dict[str, object]) -> str:
    return str(point["payload"]["properties"]["run"])  # type: ignore[index]


def test_apps_with_the_same_service_and_other_destinations_never_ship_each_others_events(
    tmp_path: Path,
) -> None:
    """Two apps on one host, default store, default service name, their own URL and token."""
    store = tmp_path / "events.db"
    with running(Receiver()) as x_receiver, running(Receiver()) as y_receiver:
        apps = []
        for run, receiver in (("X", x_receiver), ("Y", y_receiver)):
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))},
                "SQREEN_EXPORTER": "http",
                "SQREEN_LOCAL_STORE": str(store),
                "SQREEN_HEARTBEAT_DELAY": "0.3",
                "SQREEN_INGESTION_URL": receiver.url,
                "SQREEN_TOKEN": f"token-{run}",
            }
            apps.append(subprocess.Popen([sys.executable, str(APP), run, "1.5"], env=env, cwd=tmp_path))
        for app in apps:
            assert app.wait(60) == 0
        for run, receiver in (("X", x_receiver), ("Y", y_receiver)):
            assert {item.headers["x-api-key"] for item in receiver.received} == {f"token-{run}"}
            runs = Counter(run_of(point) for point in points(receiver))
            assert set(runs) == {run}, f"{run}'s destination got {dict(runs)}"
            with closing(sqlite3.connect(store)) as db:
                (tracked,) = db.execute(
                    "SELECT COUNT(*) FROM events WHERE properties LIKE ?", (f'%"run":"{run}"%',)
                ).fetchone()
            assert runs[run] == tracked  # all of its own, once each
            ids = Counter(str(point["event_id"]) for point in points(receiver))
            assert set(ids.values()) == {1}


def test_ids_are_never_reused_once_the_store_has_emptied(tmp_path: Path, open_store: OpenStore) -> None:
    db = open_store(tmp_path / "events.db")
    shop = _store.origin_for("shop", {"http": SHOP})
    route = shop.routes["http"]
    _store.register(db, shop)
    _store.insert(db, [row(f"before{i}") for i in range(5)], shop.id)
    assert _store.take_lease(db, route, "me", 30) == 0
    assert _store.advance(db, route, "me", 5)  # all five delivered
    db.execute("UPDATE events SET stored_ns = 1")  # long ago
    _store.prune(db, 1 << 30, 60, "shop")  # the age bound empties the table
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    _store.insert(db, [row(f"after{i}") for i in range(3)], shop.id)
    pending = _store.pending_rows(db, route, 5, 100)
    assert [r[0] for _, r in pending] == ["after0", "after1", "after2"]  # ids 6, 7, 8: after the cursor


def test_one_apps_age_bound_never_deletes_another_apps_queue(tmp_path: Path, open_store: OpenStore) -> None:
    db = open_store(tmp_path / "events.db")
    shop = _store.origin_for("shop", {"http": SHOP})
    other = _store.origin_for("other-app", {})
    _store.register(db, shop)
    _store.insert(db, [row(f"shop{i}") for i in range(5)], shop.id)
    db.execute("UPDATE events SET stored_ns = ?", (time.time_ns() - int(65e9),))  # 65 s in the queue
    _store.insert(db, [row("other", service="other-app")], other.id)
    _store.prune(db, 1 << 30, 60, "other-app")  # other-app keeps its events 60 s; shop's are not its own
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 6
    _store.prune(db, 1 << 30, 60, "shop")  # shop's own bound: they go, counted as never delivered
    assert db.execute("SELECT event_key FROM events").fetchall() == [("other",)]
    assert _store.cursor_of(db, shop.routes["http"]) == (0, 5)


def test_a_size_bound_applied_by_another_app_is_reported_by_the_queue_that_lost_events(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = tmp_path / "events.db"
    db = open_store(store)
    with running(Receiver()) as receiver:
        exporter = SqreenHttpExporter(receiver.url)
        shop = _store.origin_for("shop", {"http": exporter.destination})
        _store.register(db, shop)
        _store.insert(db, [row(f"shop{i}", json.dumps({"pad": "x" * 3000})) for i in range(200)], shop.id)
        drainer = Drainer(
            "http",
            lambda: SqreenHttpExporter(receiver.url),
            str(store),
            route=shop.routes["http"],
            settings=DrainSettings(3600, 1000, 2),
        )
        _store.prune(db, 200_000, 3600, "other-app")  # the file's bound: the oldest go, whoever wrote them
        left = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        assert left < 200
        assert drainer.flush(10) == (True, True)  # caught up, and something was dropped
        drainer.finish(time.monotonic() + 2)
        assert len(points(receiver)) == left
    assert sqreen_otel.stats()["events_dropped.store_bound.http"] == 200 - left


V1_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY, event_key TEXT NOT NULL UNIQUE, time_ns INTEGER NOT NULL,
    name TEXT NOT NULL, type TEXT NOT NULL, user TEXT NOT NULL, client_ip TEXT, user_agent TEXT,
    method TEXT, path TEXT, route TEXT, parameters TEXT NOT NULL, properties TEXT NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL
)
"""


def test_a_store_of_the_first_release_is_read_as_is_and_upgraded_without_losing_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], open_store: OpenStore
) -> None:
    store = tmp_path / "events.db"
    with sqlite3.connect(store) as old:  # as the recording-only release wrote it
        old.execute("PRAGMA journal_mode=WAL")
        old.execute(V1_SCHEMA)
        old.executemany(
            "INSERT INTO events (event_key, time_ns, name, type, user, parameters, properties, trace_id,"
            " span_id) VALUES (?, ?, ?, 'custom', '{}', '{}', '{}', '0', '0')",
            [(f"k{i}", 1_700_000_000_000_000_000 + i, f"old.{i}") for i in range(10)],
        )
    old.close()
    assert cli(["events", "--store", str(store), "--json", "--limit", "100"]) == 0  # before any upgrade
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert cli(["events", "--store", str(store), "--service", "shop"]) == 0  # no such column: no match
    db = open_store(store)  # a new app opens it: schema 3
    origin = _store.origin_for("shop", {})
    _store.insert(db, [row("new")], origin.id)
    _store.prune(db, 1 << 30, 7 * 86400, "shop")  # the default age bound
    kept = db.execute("SELECT id, event_key, stored_ns FROM events ORDER BY id").fetchall()
    assert [key for _, key, _ in kept] == [f"k{i}" for i in range(10)] + ["new"]
    assert kept[-1][0] == 11
    assert all(stored > time.time_ns() - int(60e9) for _, _, stored in kept)  # aged from the upgrade


def test_a_lease_outlives_a_slow_request_so_no_batch_is_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_store: OpenStore
) -> None:
    """The first answer takes 3 s, within the exporter's 4 s timeout; another process keeps
    asking to drain meanwhile. (With the lease margin set to zero, only the exporter's own
    bound keeps the lease alive.)"""
    monkeypatch.setattr(_drain, "LEASE_MARGIN_S", 0.0)
    store = tmp_path / "events.db"
    db = open_store(store)
    with running(Receiver([Reply(200, hang=3.0)])) as receiver:
        origin = _store.origin_for("shop", {"http": SqreenHttpExporter(receiver.url).destination})
        _store.register(db, origin)
        _store.insert(db, [row(f"k{i}") for i in range(10)], origin.id)

        def drainer() -> Drainer:
            return Drainer(
                "http",
                lambda: SqreenHttpExporter(receiver.url, timeout=4.0),
                str(store),
                route=origin.routes["http"],
                settings=DrainSettings(3600, 1000, 2),
            )

        first, second = drainer(), drainer()  # two processes (each its own lease owner)
        slow = threading.Thread(target=first.flush, args=(10,))
        slow.start()
        time.sleep(0.3)
        for _ in range(8):
            second.flush(1)
            time.sleep(0.3)
        slow.join(10)
        first.finish(time.monotonic() + 1)
        second.finish(time.monotonic() + 1)
        keys = Counter(str(point["event_id"]) for point in points(receiver))
    assert len(keys) == 10 and set(keys.values()) == {1}


@pytest.fixture
def dripping_server() -> Iterator[int]:
    """Accepts, reads the request, then answers one byte every 0.3 s for a minute."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                continue
            client.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
                if stop.wait(0.3):
                    break
                try:
                    client.send(bytes([byte]))
                except OSError:
                    break
            client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    server.close()


def test_one_request_takes_at_most_its_timeout_however_slowly_the_server_answers(
    dripping_server: int,
) -> None:
    transport = HttpTransport(f"http://127.0.0.1:{dripping_server}/batches", {}, timeout=1.0)
    started = time.monotonic()
    outcome = transport.post(b"{}")
    elapsed = time.monotonic() - started
    transport.close()
    assert outcome.status is ExportStatus.RETRY and outcome.detail == "request timed out"
    assert elapsed < transport.max_seconds


def test_a_process_waiting_for_anothers_lease_does_not_spin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_store: OpenStore
) -> None:
    store = tmp_path / "events.db"
    db = open_store(store)
    origin = _store.origin_for("shop", {"http": SHOP})
    route = origin.routes["http"]
    _store.register(db, origin)
    _store.insert(db, [row(f"k{i}") for i in range(50)], origin.id)  # many full batches waiting
    db.execute("UPDATE deliveries SET lease_owner = 'elsewhere:1:1:x', lease_until = ?", (time.time() + 60,))
    attempts = []
    real_take = _store.take_lease

    def counted(*args: object, **kwargs: object) -> int | None:
        attempts.append(time.monotonic())
        return real_take(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_store, "take_lease", counted)
    waiting = Drainer(
        "http", lambda: SqreenHttpExporter(SHOP), str(store), route=route, settings=DrainSettings(5, 5, 2)
    )
    waiting.poke()  # rows were written: a full batch is waiting
    time.sleep(3)
    waiting.finish(time.monotonic() + 0.5)
    assert 1 <= len(attempts) <= 6  # about one look a second, not a busy loop


EXIT_APP = """
import sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
import sqreen_otel
provider = TracerProvider()
sqreen_otel.configure(tracer_provider=provider)
with provider.get_tracer("t").start_as_current_span("POST /x", kind=SpanKind.SERVER):
    sqreen_otel.track("at.exit")
print("tracked", flush=True)
sys.stdin.readline()  # the test may lock the store now
print(time.monotonic(), flush=True)
"""


def exit_env(store: Path, url: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))},
        "SQREEN_EXPORTER": "http",
        "SQREEN_LOCAL_STORE": str(store),
        "SQREEN_INGESTION_URL": url,
        "SQREEN_GRACEFUL_TIMEOUT": "2",
        **extra,
    }


def timed_exit(tmp_path: Path, env: dict[str, str], *, lock_store: Path | None = None) -> float:
    """Seconds from the app's last line of code to its exit."""
    app = subprocess.Popen(
        [sys.executable, "-c", EXIT_APP],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert app.stdin is not None and app.stdout is not None
    assert app.stdout.readline().strip() == "tracked"
    time.sleep(1.0)  # the event is on disk, its delivery under way
    locker = None
    if lock_store is not None:
        locker = sqlite3.connect(lock_store, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # someone holds the store's write lock
    app.stdin.write("\n")
    app.stdin.flush()
    last_line = float(app.stdout.readline())
    app.wait(60)
    ended = time.monotonic()
    app.stdin.close()
    app.stdout.close()
    if locker is not None:
        locker.execute("ROLLBACK")
        locker.close()
    return ended - last_line


def test_exit_keeps_to_the_graceful_timeout_with_a_hanging_destination(tmp_path: Path) -> None:
    with running(Receiver(default=Reply(200, hang=30))) as receiver:
        took = timed_exit(tmp_path, exit_env(tmp_path / "events.db", receiver.url))
    assert took < 2 + 1.0


def test_exit_keeps_to_the_graceful_timeout_when_another_process_locks_the_store(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    with running(Receiver(default=Reply(503))) as receiver:
        took = timed_exit(tmp_path, exit_env(store, receiver.url), lock_store=store)
    assert took < 2 + 1.0


def test_a_retry_after_binds_the_next_process(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    with running(Receiver(default=Reply(503, {"Retry-After": "120"}))) as receiver:
        env = exit_env(store, receiver.url, SQREEN_HEARTBEAT_DELAY="0.2")
        timed_exit(tmp_path, env)  # tries once, is told to come back in two minutes, exits
        assert len(receiver.attempts) == 1
        with closing(sqlite3.connect(store)) as db:
            owner, until = db.execute("SELECT lease_owner, lease_until FROM deliveries").fetchone()
        assert owner == _store.RETRY_AFTER_OWNER and until > time.time() + 100
        timed_exit(tmp_path, env)  # the next process (a restart, a recycled worker) waits too
        assert len(receiver.attempts) == 1


@pytest.mark.internal_errors_expected
def test_a_batch_lost_to_an_internal_error_makes_flush_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Spool, batch: object) -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Spool, "_rows", broken)
    with make_otel() as otel:
        sqreen_otel.configure(
            tracer_provider=otel.provider, exporter="local", local_store=str(tmp_path / "e.db")
        )
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("lost")
        assert not sqreen_otel.flush(5)
    assert sqreen_otel.stats()["events_dropped.internal_error"] == 1


def test_a_store_path_with_nul_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        sqreen_otel.configure(local_store="/tmp/a\x00b.db")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_float_property_is_stored_as_text(tmp_path: Path, value: float) -> None:
    store = tmp_path / "events.db"
    with make_otel() as otel:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter="local", local_store=str(store))
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("scored", properties={"score": value})
        assert sqreen_otel.flush(5)
    with closing(sqlite3.connect(store)) as db:
        (properties,) = db.execute("SELECT properties FROM events").fetchone()
    assert json.loads(properties) == {
        "score": {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    }


V2_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY, event_key TEXT NOT NULL UNIQUE, time_ns INTEGER NOT NULL,
    name TEXT NOT NULL, type TEXT NOT NULL, user TEXT NOT NULL, client_ip TEXT, user_agent TEXT,
    method TEXT, path TEXT, route TEXT, parameters TEXT NOT NULL, properties TEXT NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, service TEXT, stored_ns INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE deliveries (
    exporter TEXT NOT NULL, service TEXT NOT NULL, delivered_id INTEGER NOT NULL,
    lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0, PRIMARY KEY (exporter, service)
);
"""


def test_a_schema_2_queue_is_still_delivered_after_the_upgrade(tmp_path: Path, open_store: OpenStore) -> None:
    """Events a version with schema 2 queued (its destination was down) reach the destination
    once the upgraded app starts; what it had delivered is not sent again."""
    store = tmp_path / "events.db"
    with sqlite3.connect(store) as old:
        old.executescript(V2_SCHEMA)
        old.executemany(
            "INSERT INTO events (event_key, time_ns, name, type, user, parameters, properties, trace_id,"
            " span_id, service, stored_ns) VALUES (?, 1, 'e', 't', '{}', '{}', '{}', '0', '0', 'shop', ?)",
            [(f"k{i}", time.time_ns()) for i in range(5)],
        )
        old.execute("INSERT INTO deliveries (exporter, service, delivered_id) VALUES ('http', 'shop', 2)")
    old.close()
    with running(Receiver()) as receiver:
        destination = SqreenHttpExporter(receiver.url).destination
        origin = _store.origin_for("shop", {"http": destination})
        db = open_store(store)
        _store.register(db, origin)
        _store.insert(db, [row("new")], origin.id)
        drainer = Drainer(
            "http",
            lambda: SqreenHttpExporter(receiver.url),
            str(store),
            route=origin.routes["http"],
            settings=DrainSettings(3600, 1000, 2),
        )
        assert drainer.flush(10) == (True, False)
        drainer.finish(time.monotonic() + 2)
        assert sorted(str(point["event_id"]) for point in points(receiver)) == ["k2", "k3", "k4", "new"]


def test_an_apps_age_bound_follows_it_across_a_change_of_destination(
    tmp_path: Path, open_store: OpenStore
) -> None:
    db = open_store(tmp_path / "events.db")
    before = _store.origin_for("shop", {"http": "https://collector.example/ token-1"})
    after = _store.origin_for("shop", {"http": "https://collector.example/ token-2"})  # a rotated token
    _store.register(db, before)
    _store.insert(db, [row(f"old{i}") for i in range(5)], before.id)
    db.execute("UPDATE events SET stored_ns = ?", (time.time_ns() - int(8 * 86400e9),))  # 8 days old
    _store.register(db, after)
    _store.insert(db, [row("fresh")], after.id)
    _store.prune(db, 1 << 30, 7 * 86400, "shop")
    assert db.execute("SELECT event_key FROM events").fetchall() == [("fresh",)]
    assert _store.cursor_of(db, before.routes["http"])[1] == 5  # never delivered: counted


def test_a_batch_the_writer_holds_when_shutdown_times_out_is_counted(tmp_path: Path) -> None:
    """Another process keeps the store locked: the writer waits on it with a batch in hand;
    shutdown keeps to its deadline and counts that batch as lost, not silently."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from sqreen_otel._scrubbing.scrubber import Scrubber
    from sqreen_otel._shipping.spool import SpoolSettings

    store = tmp_path / "events.db"
    spool = Spool(
        str(store),
        Scrubber(),
        SpoolSettings(0.05, 1000, 10_000, 1 << 30, 1e9),
        origin=_store.origin_for("shop", {}),
    )
    spool._db()  # the store exists
    locker = sqlite3.connect(store, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    provider = TracerProvider(shutdown_on_exit=False)
    sqreen_otel.configure(tracer_provider=provider, exporter="none")
    with provider.get_tracer("t").start_as_current_span("POST /x", kind=SpanKind.SERVER) as span:
        sqreen_otel.track("held")
    spool.submit(span, 3)  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while spool._in_process == 0:  # the writer took the batch and waits for the lock
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    spool.finish(time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    locker.execute("ROLLBACK")
    locker.close()
    assert sqreen_otel.stats()["events_dropped.shutdown_timeout"] == 3


def test_a_drainer_that_finds_its_cursor_moved_stops_instead_of_sending_again(
    tmp_path: Path, open_store: OpenStore
) -> None:
    """Its lease expired during a long pause and another process delivered meanwhile: renewing
    finds the cursor elsewhere, so it never re-sends what the other delivered."""
    from sqreen_otel._shipping.drain import _LeaseLost, _Result

    store = tmp_path / "events.db"
    db = open_store(store)
    origin = _store.origin_for("shop", {"http": SHOP})
    route = origin.routes["http"]
    _store.register(db, origin)
    _store.insert(db, [row(f"k{i}") for i in range(4)], origin.id)
    drainer = Drainer(
        "http", lambda: SqreenHttpExporter(SHOP), str(store), route=route, settings=DrainSettings(3600, 10, 2)
    )
    assert _store.take_lease(db, route, drainer._owner, 30) == 0
    db.execute("UPDATE deliveries SET delivered_id = 4, lease_owner = NULL")  # the other one's work
    items = [
        (row_id, _store.event_from_row(values)) for row_id, values in _store.pending_rows(db, route, 0, 10)
    ]
    with pytest.raises(_LeaseLost):
        drainer._send(db, 0, items, _Result())


def test_store_errors_never_make_a_drainer_spin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_store: OpenStore
) -> None:
    store = tmp_path / "events.db"
    db = open_store(store)
    origin = _store.origin_for("shop", {"http": SHOP})
    _store.register(db, origin)
    _store.insert(db, [row(f"k{i}") for i in range(50)], origin.id)
    calls = []

    def failing(*args: object, **kwargs: object) -> int | None:
        calls.append(time.monotonic())
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(_store, "take_lease", failing)
    drainer = Drainer(
        "http",
        lambda: SqreenHttpExporter(SHOP),
        str(store),
        route=origin.routes["http"],
        settings=DrainSettings(0.2, 5, 2),
    )
    drainer.poke()
    time.sleep(2.0)
    drainer.finish(time.monotonic() + 0.5)
    assert 1 <= len(calls) <= 6  # backing off, not thousands of attempts a second


def test_an_invalid_otlp_timeout_is_ignored_with_a_warning(sqreen_logs: pytest.LogCaptureFixture) -> None:
    from sqreen_otel.exporters.otlp import OTLPEventExporter

    for value in ("nan", "-1", "soon", "1e9"):
        exporter = OTLPEventExporter(environ={"OTEL_EXPORTER_OTLP_TIMEOUT": value})
        assert exporter.max_export_seconds == 2 * 10.0 + 1
    assert any("Ignoring OTEL_EXPORTER_OTLP_TIMEOUT" in r.getMessage() for r in sqreen_logs.records)
