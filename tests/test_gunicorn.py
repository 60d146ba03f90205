"""gunicorn prefork with --preload: every worker's events arrive exactly once."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, request_id: int) -> tuple[int, int]:
    deadline = time.monotonic() + 20
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", f"/order?id={request_id}")
            worker, master = connection.getresponse().read().decode().split()
            connection.close()
            return int(worker), int(master)
        except (ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_preloaded_workers_deliver_their_own_events_exactly_once(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))}
    env.update(SQREEN_EXPORTER="local", SQREEN_LOCAL_STORE=str(store), SQREEN_HEARTBEAT_DELAY="3600")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--chdir", str(TESTS), "--graceful-timeout", "20", "gunicorn_app:app"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        get(port, -1)  # wait until it serves
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda n: get(port, n), range(60)))
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: workers finish, exit, and flush at exit
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    workers = {worker for worker, _ in answers}
    (master,) = {master for _, master in answers}
    assert master not in workers  # the app was loaded once, in the master, before the fork
    assert len(workers) == 2, "both workers should have served (8 concurrent clients, 10 ms per request)"
    with closing(sqlite3.connect(store)) as db:
        delivered = Counter(
            db.execute(
                "SELECT json_extract(properties, '$.request'), json_extract(properties, '$.pid') FROM events"
            )
        )
    expected = Counter({(str(n), worker): 1 for n, (worker, _) in zip(range(60), answers, strict=True)})
    warmup = [key for key in delivered if key[0] == "-1"]  # the warm-up request, whichever worker took it
    assert len(warmup) == 1 and delivered[warmup[0]] == 1, output
    del delivered[warmup[0]]
    assert delivered == +expected, output  # each request's event exactly once, from the worker that served it
    assert {pid for _, pid in delivered} == workers
