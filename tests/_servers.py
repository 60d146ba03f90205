"""Real servers for end-to-end tests: gunicorn (prefork) on 127.0.0.1, started and stopped here.

``Gunicorn`` runs an app module of tests/ with a clean environment (no OTEL_*/SQREEN_* from the
caller) plus the settings given; ``request`` talks HTTP/1.1 to it with any headers.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    port: int, path: str, headers: Mapping[str, str] | None = None, method: str = "GET", timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, headers=dict(headers or {}))
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


class Gunicorn:
    """``gunicorn module:app`` from tests/, as a context manager; ``output`` after it stopped."""

    def __init__(
        self,
        app: str,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        extra: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))}
        clean.update(env or {})
        self.command = [
            sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
            "--chdir", str(TESTS), "--graceful-timeout", "20", *extra, app,
        ]  # fmt: skip
        self.env = clean
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    def __enter__(self) -> Gunicorn:
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    "gunicorn exited: " + (self.process.stdout.read() if self.process.stdout else "")
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return request(self.port, path, headers)

    def stop(self) -> int:
        """SIGTERM (a graceful stop: workers finish, exit and flush); the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.output, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output, _ = self.process.communicate()
        return self.process.returncode

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
