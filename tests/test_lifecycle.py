"""Interpreter exit and fork are normal operating conditions."""

from __future__ import annotations

import json
from pathlib import Path

from _support import run_python

PROBE = Path(__file__).with_name("lifecycle_probe.py")


def run(
    scenario: str, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, object]]]:
    out = tmp_path / "exports.jsonl"
    completed = run_python([str(PROBE), scenario, str(out)], tmp_path, env=env)
    assert completed.returncode == 0, completed.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return int(completed.stdout.strip()), lines


def events_by_pid(lines: list[dict[str, object]]) -> dict[object, list[object]]:
    by_pid: dict[object, list[object]] = {}
    for line in lines:
        by_pid.setdefault(line["pid"], []).extend(line["events"])  # type: ignore[arg-type]
    return by_pid


def test_events_queued_at_a_normal_exit_are_delivered(tmp_path: Path) -> None:
    pid, lines = run("exit", tmp_path)
    assert events_by_pid(lines) == {pid: ["exit.in.request", "exit.no.request"]}


def test_events_queued_at_exit_are_delivered_when_no_thread_can_start(tmp_path: Path) -> None:
    """Python 3.12+ starts no thread once atexit runs: what is queued is still delivered."""
    pid, lines = run("exit", tmp_path, env={"PROBE_NO_THREADS_AT_EXIT": "1"})
    assert events_by_pid(lines) == {pid: ["exit.in.request", "exit.no.request"]}


def test_after_fork_each_process_delivers_its_own_events_exactly_once(tmp_path: Path) -> None:
    parent, lines = run("fork", tmp_path)
    by_pid = events_by_pid(lines)
    assert set(by_pid) - {parent}, "the child delivered nothing"
    (child,) = set(by_pid) - {parent}
    assert by_pid[child] == ["child.event"]  # the parent's queued events are not sent twice
    assert sorted(by_pid[parent]) == ["fork.in.request", "fork.no.request", "parent.after.fork"]  # type: ignore[type-var]
