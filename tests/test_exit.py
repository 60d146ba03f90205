"""Interpreter exit: queued events are delivered; a hung destination never hangs the exit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _receivers import Receiver, Reply, running
from _support import run_python

PROBE = Path(__file__).with_name("exit_probe.py")


@pytest.mark.parametrize("threads_at_exit", [True, False], ids=["threads", "no-threads-like-py3.12"])
def test_a_normal_exit_delivers_queued_events(tmp_path: Path, threads_at_exit: bool) -> None:
    env = {} if threads_at_exit else {"PROBE_NO_THREADS_AT_EXIT": "1"}
    with running(Receiver()) as receiver:
        completed = run_python([str(PROBE), receiver.url, "5"], tmp_path, env=env)
        assert completed.returncode == 0, completed.stderr
        (request,) = receiver.wait_for(1)
    names = [point["signal_name"] for point in json.loads(request.body)]
    assert names == ["sq.sdk.users.login.failure"] * 3


@pytest.mark.parametrize("threads_at_exit", [True, False], ids=["threads", "no-threads-like-py3.12"])
def test_a_hung_destination_does_not_hang_the_exit_and_the_next_run_delivers(
    tmp_path: Path, threads_at_exit: bool
) -> None:
    # Without threads (3.12+) the last attempt runs on the exiting thread, with no watchdog:
    # the shutdown deadline must still bound the request, not the transport's 10 s timeout.
    env = {} if threads_at_exit else {"PROBE_NO_THREADS_AT_EXIT": "1"}
    with running(Receiver(default=Reply(hang=30))) as receiver:
        port = receiver.server.server_port
        started = time.monotonic()
        completed = run_python([str(PROBE), receiver.url, "1.5"], tmp_path, env=env)
        elapsed = time.monotonic() - started
        assert completed.returncode == 0, completed.stderr
        assert receiver.attempts, "the exit hook tried to deliver"
    assert elapsed < 1.5 + 3.0  # the graceful timeout plus interpreter start-up, not the 30 s hang
    assert "stay queued in the event store" in completed.stderr
    with running(Receiver(port=port)) as receiver:  # the app starts again: it delivers what was left
        completed = run_python([str(PROBE), receiver.url, "5"], tmp_path, env=env)
        assert completed.returncode == 0, completed.stderr
        received = receiver.wait_for(1)
    points = [point for request in received for point in json.loads(request.body)]
    assert len(points) == 6  # the 3 left by the first run, and the second run's 3
    assert len({point["event_id"] for point in points}) == 6  # each once
