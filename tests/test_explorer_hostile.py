"""The Event Explorer prints attacker-chosen data and takes absurd arguments: both stay harmless."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from _support import make_otel
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._cli.events import main as cli

SCRIPT = Path(sys.executable).with_name("sqreen-otel")
# Clear the screen, set the window title (OSC), forge a row, reverse the text direction.
HOSTILE = "ann\x1b[2J\x1b]0;pwned\x07@x\r\n2026-01-01 00:00:00  users.login.success  admin\u202ecom\x9b"


def hostile_store(tmp_path: Path) -> str:
    store = str(tmp_path / "hostile #1?x=%41.db")  # characters that mean something in a SQLite URI
    with make_otel() as otel:
        sqreen_otel.configure(tracer_provider=otel.provider, exporter="local", local_store=store)
        attributes = {"url.path": "/login\x1b[31m", "client.address": "198.51.100.7"}
        with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER, attributes=attributes):
            sqreen_otel.auth_track(False, email=HOSTILE)
            sqreen_otel.track(f"probe{HOSTILE}", properties={HOSTILE: HOSTILE, "ratio": float("nan")})
        assert sqreen_otel.flush(10)
    assert Path(store).is_file()  # the exact file name, not a URI's interpretation of it
    return store


def strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def run(*arguments: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli(["events", *arguments], out=out), out.getvalue()


def assert_inert(output: str, rows: int) -> None:
    for char in ("\x1b", "\x07", "\r", "\x9b", "\u202e"):
        assert char not in output
    assert output.count("\n") == rows + 2  # header, rule, one line per row: no forged row


def test_table_and_group_by_escape_control_characters(tmp_path: Path) -> None:
    store = hostile_store(tmp_path)
    code, table = run("--store", store)
    assert code == 0
    assert_inert(table, 2)
    assert "\\x1b[2J" in table  # shown, escaped
    for field in ("user.email", "name", "path", HOSTILE):
        code, groups = run("--store", store, "--group-by", field)
        assert code == 0
        assert_inert(groups, len(run("--store", store, "--group-by", field, "--json")[1].splitlines()))


def test_json_output_is_strict_and_inert(tmp_path: Path) -> None:
    store = hostile_store(tmp_path)
    with closing(sqlite3.connect(store)) as db:  # a value no JSON parser accepts, as an older writer left
        db.execute(
            'UPDATE events SET properties = \'{"x": NaN, "y": Infinity}\''
            " WHERE name = 'users.login.failure'"
        )
        db.commit()

    def strict(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    for arguments in ((), ("--group-by", "user.email")):
        code, output = run("--store", store, "--json", *arguments)
        assert code == 0
        lines = output.splitlines()
        assert lines and all(line.isascii() and "\x1b" not in line for line in lines)
        records = [json.loads(line, parse_constant=strict) for line in lines]
        assert any("\x1b]0;pwned\x07" in text for record in records for text in strings(record))
    code, output = run("--store", store, "--json")
    values = [json.loads(line)["properties"] for line in output.splitlines()]
    assert {"x": "NaN", "y": "Infinity"} in values
    assert {k: v for value in values for k, v in value.items() if k == "ratio"} == {"ratio": "NaN"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since", "99999999999d"], None),  # before the epoch: simply every event
        (["--since", "9" * 400 + "d"], "not a time"),
        (["--until", "10000-01-01"], "not a time"),
        (["--limit", "1e20"], "not a whole number"),
        (["--limit", "-1"], "must be from 1"),
        (["--limit", "99999999999999999999999"], "must be from 1"),
        (["--since", "\x1b[2Jsoon"], "not a time"),
        (["--store", "."], "not an event store"),
        (["--store", "/nonexistent/\x1b[2J.db"], "no event store"),
    ],
)
def test_absurd_arguments_give_one_line_errors(
    tmp_path: Path, arguments: list[str], message: str | None
) -> None:
    store = hostile_store(tmp_path) if "--store" not in arguments else None
    command = [str(SCRIPT), "events", *(["--store", store] if store else []), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert "Traceback" not in completed.stderr
    assert "\x1b" not in completed.stderr
    if message is None:
        assert completed.returncode == 0, completed.stderr
        return
    assert completed.returncode in (1, 2)
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    assert message in completed.stderr


def test_a_terminal_that_cannot_show_a_character_gets_escapes_not_a_traceback(tmp_path: Path) -> None:
    store = hostile_store(tmp_path)
    completed = subprocess.run(
        [str(SCRIPT), "events", "--store", store],
        capture_output=True,
        cwd=tmp_path,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert completed.returncode == 0, completed.stderr
    assert b"Traceback" not in completed.stderr


def test_the_explorer_never_creates_a_store(tmp_path: Path) -> None:
    assert cli(["events", "--store", str(tmp_path / "missing.db")]) == 1
    assert list(tmp_path.iterdir()) == []
