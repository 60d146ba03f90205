"""Shared fixtures: a real OpenTelemetry SDK per test, isolated settings and counters."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
from _servers import free_port
from _support import OpenStore, Otel, make_otel
from opentelemetry import context as otel_context

from sqreen_otel._config import build_config, set_current_config
from sqreen_otel._log import log_once
from sqreen_otel._recording.routing import use_provider
from sqreen_otel._shipping import store as _store
from sqreen_otel._stats import stats


@pytest.fixture(autouse=True)
def _isolation(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Each test starts with default settings, no SQREEN_* variables, zeroed counters and a
    default event store of its own (never the user's), and fails if it left an internal error
    counted (unless marked ``internal_errors_expected``)."""
    for name in list(os.environ):
        if name.startswith("SQREEN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))
    set_current_config(build_config({}))
    use_provider(None)
    stats.reset()
    log_once.reset()
    token = otel_context.attach(otel_context.Context())
    yield
    otel_context.detach(token)
    if request.node.get_closest_marker("internal_errors_expected") is None:
        assert stats.snapshot().get("internal_errors", 0) == 0, "the test left internal errors counted"


@pytest.fixture
def otel() -> Iterator[Otel]:
    with make_otel() as harness:
        yield harness


@pytest.fixture
def sqreen_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="sqreen_otel")
    return caplog


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Redis server (Debian's redis-server, installed by `make test`) on a free port."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is installed by `make test` (Debian's redis-server)"
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while not _pings(client):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", server
    server.terminate()
    server.wait(10)


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.fixture
def open_store() -> Iterator[OpenStore]:
    """Opens an event store as the library does (``store.connect``); closed at the test's end."""
    with ExitStack() as stack:
        yield lambda path: stack.enter_context(closing(_store.connect(os.fspath(path))))
