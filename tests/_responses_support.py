"""What the security-response and playbook tests share: the gunicorn app's settings, requests
from a chosen client IP, each worker's view of the actions, the stored events."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

from _servers import Gunicorn, request

APP = "responses_app:app"
BLOCKED_IP = "198.51.100.7"


def effects(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def settings(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SIDE_EFFECTS": str(tmp_path / "effects.txt"),
        "SQREEN_LOCAL_STORE": str(tmp_path / "events.db"),
        "SQREEN_ACTIONS_STORE": str(tmp_path / "actions.db"),
        "SQREEN_TRUSTED_PROXIES": "127.0.0.1/32",
        "SQREEN_SPOOL_INTERVAL": "0.1",
        **extra,
    }


def sqreen_cli(env: dict[str, str], *argv: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))}
    completed = subprocess.run(
        [sys.executable, "-m", "sqreen_otel", *argv],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=env["SIDE_EFFECTS"].rsplit("/", 1)[0],
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def from_ip(ip: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **headers}


def until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not within the deadline"
        time.sleep(0.05)
    return time.monotonic() - started


def all_refused(server: Gunicorn, path: str, ip: str, status: int = 403, tries: int = 12) -> bool:
    return all(request(server.port, path, from_ip(ip), method="POST")[0] == status for _ in range(tries))


def workers_blocking(
    server: Gunicorn, ip: str, workers: int = 3, *, username: str | None = None
) -> set[bool]:
    """Each worker's ``is_blocked(ip=ip)`` (or of the user ``username``): slow concurrent calls,
    until every worker answered."""
    query = f"username={username}" if username is not None else f"ip={ip}"
    answers: dict[int, bool] = {}
    with ThreadPoolExecutor(max_workers=3 * workers) as pool:
        for _ in range(5):
            calls = [
                pool.submit(request, server.port, f"/health/state?{query}&sleep=0.15")
                for _ in range(3 * workers)
            ]
            for call in calls:
                state = json.loads(call.result()[2])
                answers[state["pid"]] = state["blocked"]
            if len(answers) == workers:
                return set(answers.values())
    raise AssertionError(f"only {len(answers)} of {workers} workers answered")


def stored(store: Path, name: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(store)) as db:
        rows = db.execute("SELECT properties, client_ip, user FROM events WHERE name = ?", (name,)).fetchall()
    return [{"properties": json.loads(p), "client_ip": ip, "user": json.loads(u)} for p, ip, u in rows]
