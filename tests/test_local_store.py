"""The local store (SQLite, WAL) and the Event Explorer on top of it."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from _support import make_otel
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._cli.events import main as cli
from sqreen_otel.exporters import LocalStoreExporter

WRITER = Path(__file__).with_name("store_writer.py")


def store_with_events(tmp_path: Path) -> str:
    store = str(tmp_path / "events.db")
    with make_otel() as otel:
        sqreen_otel.configure(
            tracer_provider=otel.provider, exporter="local", local_store=store, heartbeat_delay=3600
        )
        for index, (ip, user) in enumerate([("192.0.2.66", "u1")] * 3 + [("198.51.100.7", "u2")]):
            attributes = {
                "client.address": ip,
                "http.request.method": "POST",
                "url.path": "/login",
                "url.query": "a=1",
            }
            with otel.tracer.start_as_current_span(
                "POST /login", kind=SpanKind.SERVER, attributes=attributes
            ):
                sqreen_otel.auth_track(False, username=user)
                sqreen_otel.track(
                    "probe",
                    properties={"attempt": index, "kind": "stuffing" if ip.startswith("192.") else "other"},
                )
        assert sqreen_otel.flush(10)
    return store


def run(*arguments: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli(["events", *arguments], out=out)
    return code, out.getvalue()


def test_events_are_stored_in_wal_mode_with_their_request(tmp_path: Path) -> None:
    store = store_with_events(tmp_path)
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = db.execute(
            "SELECT name, user, client_ip, method, path, parameters FROM events ORDER BY id"
        ).fetchall()
    assert len(rows) == 8
    assert rows[0] == (
        "users.login.failure",
        '{"username":"u1"}',
        "192.0.2.66",
        "POST",
        "/login",
        '{"a":["1"]}',
    )


def test_a_retried_batch_never_duplicates_rows(tmp_path: Path) -> None:
    store = str(tmp_path / "events.db")
    with make_otel() as otel:
        with otel.tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
            sqreen_otel.track("once")
        (span,) = otel.exported()
    exporter = LocalStoreExporter(store)
    exporter.export([span])
    exporter.export([span])  # the same batch again, as after a timeout on a write that succeeded
    exporter.shutdown()
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)


def test_several_processes_write_one_store(tmp_path: Path) -> None:
    store = str(tmp_path / "shared.db")
    writers = [
        subprocess.Popen([sys.executable, str(WRITER), store, label, "150"], cwd=tmp_path)
        for label in ("a", "b", "c")
    ]
    assert [writer.wait(120) for writer in writers] == [0, 0, 0]
    with closing(sqlite3.connect(store)) as db:
        counts = dict(
            db.execute(
                "SELECT json_extract(properties, '$.writer'),"
                " COUNT(DISTINCT json_extract(properties, '$.index')) FROM events GROUP BY 1"
            )
        )
    assert counts == {"a": 150, "b": 150, "c": 150}


def test_explorer_table_and_filters(tmp_path: Path) -> None:
    store = store_with_events(tmp_path)
    code, table = run("--store", store)
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "EVENT", "USER", "CLIENT", "IP", "REQUEST", "PROPERTIES"]
    assert len(lines) == 2 + 8
    assert "users.login.failure" in lines[2] and "username=u1" in lines[2] and "POST /login" in lines[2]
    _, only_ip = run("--store", store, "--ip", "198.51.100.7", "--json")
    assert {json.loads(line)["client_ip"] for line in only_ip.splitlines()} == {"198.51.100.7"}
    _, by_user = run("--store", store, "--user", "u2", "--json")
    assert [json.loads(line)["name"] for line in by_user.splitlines()] == ["users.login.failure"]
    _, by_key = run("--store", store, "--user", "username=u1", "--name", "users.login.failure", "--json")
    assert len(by_key.splitlines()) == 3
    _, recent = run(
        "--store", store, "--since", "1h", "--until", "2999-01-01T00:00:00", "--limit", "2", "--json"
    )
    assert [json.loads(line)["properties"].get("attempt") for line in recent.splitlines()] == [None, 3]
    _, old = run("--store", store, "--until", "2000-01-01")
    assert old == "no events match\n"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("ip", [("192.0.2.66", 6), ("198.51.100.7", 2)]),
        ("user.username", [(None, 4), ("u1", 3), ("u2", 1)]),  # a failed login identifies nobody
        ("kind", [(None, 4), ("stuffing", 3), ("other", 1)]),
        ("param.a", [("1", 8)]),
        ("name", [("probe", 4), ("users.login.failure", 4)]),
    ],
)
def test_explorer_group_by(tmp_path: Path, field: str, expected: list[tuple[object, int]]) -> None:
    store = store_with_events(tmp_path)
    code, output = run("--store", store, "--group-by", field, "--json")
    assert code == 0
    assert [(json.loads(line)[field], json.loads(line)["count"]) for line in output.splitlines()] == expected
    _, table = run("--store", store, "--group-by", field)
    assert table.splitlines()[0].split()[:2] == [field.upper(), "COUNT"]


def test_explorer_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["events", "--store", str(tmp_path / "missing.db")]) == 1
    assert "no event store" in capsys.readouterr().err


def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sqreen-otel")
    completed = subprocess.run([str(script), "events", "--help"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0
    assert "--group-by" in completed.stdout
