"""The durable local queue: events on disk within a second, delivered after SIGTERM, kill -9 and
restarts, exactly once; per-event isolation; exact flush; bounds; fork; a disk that refuses."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from _instrumentations import needs
from _receivers import Receiver, Reply, running
from _servers import TESTS, Gunicorn
from _support import OpenStore, make_otel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._cli.events import main as cli
from sqreen_otel._scrubbing.scrubber import MASK
from sqreen_otel._shipping import store as _store

APP = TESTS / "queue_app.py"


def rows(
    store: Path, query: str = "SELECT name, properties FROM events ORDER BY id"
) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(store)) as db:
        return db.execute(query).fetchall()


def stored(store: Path) -> bool:
    try:
        return store.exists() and bool(rows(store))
    except sqlite3.OperationalError:  # created, its schema not yet
        return False


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_events_reach_the_disk_scrubbed_within_a_second_without_a_flush(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    with make_otel() as otel:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter="local", local_store=str(store))
        with otel.tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER):
            sqreen_otel.track("pay", properties={"card": "4111 1111 1111 1111", "password": "hunter2"})
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not stored(store):
            time.sleep(0.05)
        ((name, properties),) = rows(store)
    assert name == "pay"
    assert json.loads(str(properties)) == {"card": MASK, "password": MASK}
    assert b"hunter2" not in b"".join(path.read_bytes() for path in tmp_path.iterdir())


def delivered_points(receiver: Receiver) -> list[dict[str, object]]:
    return [point for item in receiver.received for point in json.loads(item.body)]


def test_sigterm_loses_at_most_the_last_second_and_the_restart_delivers_the_rest_once(tmp_path: Path) -> None:
    """``docker stop`` sends SIGTERM: the process ends at once, no exit hook runs. What reached
    the disk is delivered by the next run of the app, each event once."""
    store = tmp_path / "events.db"
    port = closed_port()  # the destination is down during the first run, back for the second
    env = {
        "SQREEN_EXPORTER": "http",
        "SQREEN_LOCAL_STORE": str(store),
        "SQREEN_HEARTBEAT_DELAY": "0.5",
        "SQREEN_INGESTION_URL": f"http://127.0.0.1:{port}/batches",
    }
    first = subprocess.Popen(
        [sys.executable, str(APP), "first", "60"],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    progress: list[tuple[int, float]] = []
    assert first.stdout is not None
    for line in first.stdout:
        _, _, sequence, at = line.split()
        progress.append((int(sequence), float(at)))
        if int(sequence) >= 400:
            break
    first.send_signal(signal.SIGTERM)
    killed_at = time.time()
    first.wait(30)
    first.stdout.close()
    assert first.returncode == -signal.SIGTERM
    with running(Receiver(port=port)) as receiver:
        second = subprocess.run(
            [sys.executable, str(APP), "second", "1"],
            env={**os.environ, **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 0, second.stderr
        points = delivered_points(receiver)
    ids = Counter(str(point["event_id"]) for point in points)
    assert set(ids.values()) == {1}, "each event delivered once"
    delivered = {
        int(p["payload"]["properties"]["sequence"])  # type: ignore[index]
        for p in points
        if p["payload"]["properties"]["run"] == "first"  # type: ignore[index]
    }
    safe = max(sequence for sequence, at in progress if at <= killed_at - 1.0)  # tracked a second before
    assert set(range(safe + 1)) <= delivered
    second_run = [p for p in points if p["payload"]["properties"]["run"] == "second"]  # type: ignore[index]
    assert int(second.stdout.split()[-1]) == len(second_run)


@needs("flask")  # flask_server_app
def test_kill_9_of_a_gunicorn_worker_under_load_loses_at_most_its_last_second(tmp_path: Path) -> None:
    receiver = Receiver()
    store = tmp_path / "events.db"
    served: dict[int, tuple[int, float]] = {}  # request id -> (worker pid, answered at)
    with running(receiver):
        env = {
            "SQREEN_EXPORTER": "http",
            "SQREEN_INGESTION_URL": receiver.url,
            "SQREEN_LOCAL_STORE": str(store),
            "SQREEN_HEARTBEAT_DELAY": "0.5",
        }
        with Gunicorn("flask_server_app:app", tmp_path, env, workers=2) as server:
            victim = 0
            killed_at = 0.0
            for request_id in range(600):  # about four seconds of load
                status, headers, _ = server.get(f"/login?id={request_id}&user=u{request_id}")
                assert status == 200
                served[request_id] = (int(headers["x-worker"]), time.time())
                time.sleep(0.005)
                if request_id == 400:
                    victim = int(headers["x-worker"])
                    os.kill(victim, signal.SIGKILL)
                    killed_at = time.time()
                    time.sleep(0.5)  # gunicorn notices and replaces the worker
            server.stop()
        assert server.process is not None and server.process.returncode == 0, server.output
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(delivered_points(receiver)) < 900:
            time.sleep(0.1)
        points = delivered_points(receiver)
    ids = Counter(str(point["event_id"]) for point in points)
    assert set(ids.values()) == {1}, "each event delivered once"
    tagged = {
        int(str(point["payload"]["properties"]["id"]))  # type: ignore[index]
        for point in points
        if point["signal_name"] == "sq.sdk.request.tagged"
    }
    must = {
        request_id for request_id, (worker, at) in served.items() if worker != victim or at <= killed_at - 1.0
    }
    assert must <= tagged
    assert len(must) >= 450  # all but the victim's share of the second before the kill


def test_a_timestamp_past_2262_takes_the_time_of_the_call_and_blocks_nothing(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    with make_otel() as otel:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter="local", local_store=str(store))
        far = dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc)
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            before = time.time_ns()
            sqreen_otel.track("far", timestamp=far)
            sqreen_otel.from_context().track_event("far.builder").with_timestamp(far)
            sqreen_otel.track("past", timestamp=dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc))
            sqreen_otel.track("fine")
        assert sqreen_otel.flush(10)
    stored = rows(store, "SELECT name, time_ns FROM events ORDER BY id")
    assert [name for name, _ in stored] == ["far", "far.builder", "past", "fine"]
    assert all(int(str(time_ns)) >= before for _, time_ns in stored)
    assert sqreen_otel.stats()["timestamps_out_of_range"] == 3


def test_flush_reaches_every_exporter_whatever_the_others_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """otlp down, local fine: the store is written and flush() is True (durably queued)."""
    store = tmp_path / "events.db"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with make_otel() as otel:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter="otlp,local", local_store=str(store))
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("kept")
        assert sqreen_otel.flush(5)
        assert [name for name, _ in rows(store)] == ["kept"]
        assert sqreen_otel.stats()["export_retries.otlp"] >= 1
        assert "events_exported.otlp" not in sqreen_otel.stats()


def test_http_responses_are_read_within_a_bound_and_connections_reused() -> None:
    huge = Reply(200, body_bytes=1 << 30)  # announces 1 GB and streams it
    with running(Receiver([huge], default=Reply(200))) as receiver, make_otel() as otel:
        sqreen_otel.configure(
            tracer_provider=otel.provider, exporter="http", ingestion_url=receiver.url, heartbeat_delay=3600
        )
        for batch in range(4):
            with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
                sqreen_otel.track("batch", properties={"n": batch})
            started = time.monotonic()
            assert sqreen_otel.flush(10)
            assert time.monotonic() - started < 5  # the gigabyte was not read
        assert len(receiver.received) == 4
        assert receiver.body_cut_short
        assert len(receiver.connections) == 2  # the one the huge answer closed, then one kept alive


def test_an_open_builder_ends_at_flush_and_later_changes_are_ignored(tmp_path: Path) -> None:
    with make_otel() as otel:
        builder = sqreen_otel.from_context().track_event("outside.request")  # a carrier kept open
        builder.with_properties({"step": 1})
        (carrier,) = otel.exported()  # flush ends it: exported although the builder is alive
        assert [e.name for e in carrier.events] == ["outside.request"]
        builder.with_properties({"step": 2})
        assert sqreen_otel.stats()["event_changes_after_end_ignored"] == 1


def test_apps_sharing_a_store_are_told_apart_by_service_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "shared.db"
    for service in ("shop", "admin"):
        provider = TracerProvider(resource=Resource({"service.name": service}), shutdown_on_exit=False)
        sqreen_otel.configure(tracer_provider=provider, exporter="local", local_store=str(store))
        with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
            sqreen_otel.track(f"{service}.event")
        assert sqreen_otel.flush(10)
        provider.shutdown()
    assert cli(["events", "--store", str(store), "--service", "shop", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["name"] == "shop.event" and json.loads(line)["service"] == "shop"
    assert cli(["events", "--store", str(store), "--group-by", "service", "--json"]) == 0
    counts = {
        json.loads(line)["service"]: json.loads(line)["count"]
        for line in capsys.readouterr().out.splitlines()
    }
    assert counts == {"shop": 1, "admin": 1}


FORK_CHILD = """
import os, sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
import sqreen_otel
from sqreen_otel import _log, _setup
from sqreen_otel._recording import live_event as _events
from sqreen_otel._recording import routing as _placement
from sqreen_otel._recording import request_state as _state
from sqreen_otel._stats import stats as _stats
provider = TracerProvider()
sqreen_otel.configure(tracer_provider=provider, exporter="local", local_store=sys.argv[1])
locks = [_events._LOCK, _state._IDENTIFY_LOCK, _log._periodic_lock, _log.log_once._lock,
         _placement._carriers_lock, _setup._lock, _stats._lock]
held, release = threading.Event(), threading.Event()
def hold():
    for lock in locks:
        lock.acquire()
    held.set()
    release.wait(60)
    for lock in locks:
        lock.release()
threading.Thread(target=hold, daemon=True).start()
held.wait()
pid = os.fork()  # every lock of ours is held by a thread that does not exist in the child
if pid == 0:
    with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.identify({"uid": "child"})
        sqreen_otel.track("from.child")
    os._exit(0 if sqreen_otel.flush(10) else 3)
_, status = os.waitpid(pid, 0)
release.set()
print(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_never_deadlocks_on_a_lock_held_at_fork(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    completed = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # never the repository root, whose sources would shadow the installed package
        check=False,
    )
    assert completed.stdout.strip() == "0", completed.stderr
    assert [name for name, _ in rows(store)] == ["sq.identify", "from.child"]


def row(key: str, properties: str = "{}") -> tuple[object, ...]:
    """A store row as ``store.event_row`` makes them."""
    return (key, 1, "e", "t", "{}", None, None, None, None, None, "{}", properties, "0", "0", "shop")


def test_the_store_is_bounded_and_undelivered_drops_are_counted(
    tmp_path: Path, open_store: OpenStore
) -> None:
    db = open_store(tmp_path / "events.db")
    shop = _store.origin_for("shop", {"http": "https://collector.example/"})
    _store.register(db, shop)
    _store.insert(db, [row(f"k{i}") for i in range(50)], shop.id)
    db.execute("UPDATE events SET stored_ns = ?", (time.time_ns() - int(3600e9),))  # an hour old
    _store.insert(db, [row(f"n{i}", "x" * 2000) for i in range(600)], shop.id)
    _store.prune(db, max_bytes=400_000, max_age_s=60, service="shop")
    left = db.execute("SELECT COUNT(*), MIN(event_key) FROM events").fetchone()
    assert left[0] < 600 and not str(left[1]).startswith("k")  # the old ones went first, then the oldest
    assert _store.cursor_of(db, shop.routes["http"])[1] == 650 - left[0]  # all undelivered: all counted
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    assert pages * db.execute("PRAGMA page_size").fetchone()[0] <= 400_000


@pytest.mark.parametrize("fixed", [True, False])
def test_a_store_that_cannot_be_written_holds_events_in_memory_loudly(
    tmp_path: Path, fixed: bool, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = blocker / "events.db"
    with make_otel() as otel:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter="local", local_store=str(store))
        with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
            sqreen_otel.track("held")
        assert not sqreen_otel.flush(5)  # neither delivered nor durably queued
        assert any("cannot write the event store" in r.getMessage() for r in sqreen_logs.records)
        if fixed:
            blocker.unlink()
            blocker.mkdir()
            with otel.tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
                sqreen_otel.track("later")
            assert sqreen_otel.flush(5)
            assert [name for name, _ in rows(store)] == ["held", "later"]


def test_the_explorer_opens_an_existing_store_without_creating_files(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    db = _store.connect(str(store))
    db.close()  # the last connection closes: no -wal/-shm left
    before = sorted(path.name for path in tmp_path.iterdir())
    assert cli(["events", "--store", str(store)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_a_dead_processs_lease_is_taken_at_once(tmp_path: Path, open_store: OpenStore) -> None:
    db = open_store(tmp_path / "events.db")
    route = _store.origin_for("shop", {"http": "https://collector.example/"}).routes["http"]
    _store.register(db, _store.Origin("o", "shop", {"http": route}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host, namespace, _, _ = _store.lease_owner().split(":")
    owner = f"{host}:{namespace}:{dead.pid}:dead"
    db.execute("UPDATE deliveries SET lease_owner = ?, lease_until = ?", (owner, time.time() + 600))
    assert _store.take_lease(db, route, "me", 30) is not None
    for elsewhere in ("elsewhere:1:1:x", f"{host}:another-pid-namespace:{dead.pid}:x"):
        db.execute("UPDATE deliveries SET lease_owner = ?, lease_until = ?", (elsewhere, time.time() + 600))
        assert _store.take_lease(db, route, "me", 30) is None  # another host's or container's: wait
