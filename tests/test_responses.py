"""Security responses end to end: a real Flask app under gunicorn with several workers on
127.0.0.1, actions added by the operator's CLI, an actions file, or a shared Redis; the view's
side effects tell whether it ran."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from _responses_support import (
    APP,
    BLOCKED_IP,
    all_refused,
    effects,
    from_ip,
    settings,
    sqreen_cli,
    stored,
    until,
    workers_blocking,
)
from _servers import Gunicorn, request


def test_a_cli_block_reaches_every_worker_within_two_seconds_and_answers_before_the_view(
    tmp_path: Path,
) -> None:
    env = settings(tmp_path, SQREEN_PATH_PASSLIST="/health", SQREEN_IP_PASSLIST="192.0.2.200/32")
    side = tmp_path / "effects.txt"
    with Gunicorn(APP, tmp_path, env, workers=3) as server:
        assert workers_blocking(server, BLOCKED_IP) == {False}  # every worker answered: none blocks yet
        before = len(effects(side))
        sqreen_cli(env, "actions", "block-ip", BLOCKED_IP, "192.0.2.0/24")
        took = until(lambda: workers_blocking(server, BLOCKED_IP) == {True}, timeout=2.5)
        assert took < 2.0  # every worker enforces it within 2 s
        assert all_refused(server, "/transfer", BLOCKED_IP, tries=20)
        attempts = len(effects(side)) - before
        for _ in range(30):
            assert request(server.port, "/transfer", from_ip(BLOCKED_IP), "POST")[0] == 403
        assert len(effects(side)) - before == attempts  # the view never ran once the block was in force
        # A forged left-most hop cannot hide the client the trusted proxy saw.
        assert request(server.port, "/transfer", from_ip(f"203.0.113.77, {BLOCKED_IP}"), "POST")[0] == 403
        # The page: JSON or HTML by Accept, nothing of the request reflected.
        status, headers, body = request(
            server.port, "/transfer", from_ip(BLOCKED_IP, Accept="application/json"), "POST"
        )
        assert (
            status == 403
            and headers["content-type"] == "application/json"
            and json.loads(body)["status"] == 403
        )
        status, headers, body = request(
            server.port, "/x<script>", from_ip(BLOCKED_IP, Accept="text/html"), "POST"
        )
        assert headers["content-type"].startswith("text/html") and b"<script>" not in body
        # Passlists: the health check, and the office.
        assert request(server.port, "/health", from_ip(BLOCKED_IP))[0] == 200
        assert request(server.port, "/health/../transfer", from_ip(BLOCKED_IP), "POST")[0] == 403
        assert request(server.port, "/transfer", from_ip("192.0.2.200"), "POST")[0] == 200
        assert request(server.port, "/transfer", from_ip("192.0.2.201"), "POST")[0] == 403
        # Unblocked: served again.
        sqreen_cli(
            env,
            "actions",
            "remove",
            next(
                iter(
                    json.loads(line)["action_id"]
                    for line in sqreen_cli(env, "actions", "list", "--json").splitlines()
                )
            ),
        )
    events = stored(tmp_path / "events.db", "sq.action.block_ip")
    assert events and all(event["properties"]["action_id"].startswith("cli-") for event in events)
    assert {event["client_ip"] for event in events} >= {BLOCKED_IP, "192.0.2.201"}


def test_a_blocked_user_is_refused_at_identify_and_the_rest_of_the_view_does_not_run(tmp_path: Path) -> None:
    env = settings(tmp_path)
    side = tmp_path / "effects.txt"
    with Gunicorn(APP, tmp_path, env, workers=3) as server:
        sqreen_cli(env, "actions", "block-user", "email=mallory@example.com", "--id", "mallory")
        sqreen_cli(env, "actions", "redirect-ip", "203.0.113.5", "--url", "https://example.com/verify")
        until(lambda: all_refused(server, "/login?user=mallory@example.com", "192.0.2.10"), timeout=2.5)
        until(lambda: all_refused(server, "/transfer", "203.0.113.5", status=303), timeout=2.5)
        enforced_from = len(effects(side))
        for _ in range(10):
            assert (
                request(server.port, "/login?user=mallory@example.com", from_ip("192.0.2.10"), "POST")[0]
                == 403
            )
            status, headers, _ = request(
                server.port, "/login?user=ann@example.com", from_ip("192.0.2.10"), "POST"
            )
            assert status == 200
        status, headers, _ = request(server.port, "/transfer", from_ip("203.0.113.5"), "POST")
        assert status == 303 and headers["location"] == "https://example.com/verify"
        assert request(server.port, "/blocked?user=mallory@example.com", from_ip("192.0.2.10"))[2] == b"True"
        assert request(server.port, "/blocked?user=ann@example.com", from_ip("192.0.2.10"))[2] == b"False"
    lines = effects(side)[enforced_from:]
    assert not any(line.startswith(("after-identify mallory", "swallowed")) for line in lines)
    assert any(line.startswith("after-identify ann@example.com") for line in lines)
    (event, *_) = stored(tmp_path / "events.db", "sq.action.block_user")
    assert event["properties"] == {"action_id": "mallory", "matched": "email"}
    assert event["user"] == {"email": "mallory@example.com"}
    redirect = stored(tmp_path / "events.db", "sq.action.redirect_ip")[0]
    assert redirect["properties"]["url"] == "https://example.com/verify"


def test_an_actions_file_is_reloaded_and_a_malformed_one_keeps_the_last_good_set(tmp_path: Path) -> None:
    actions_file = tmp_path / "actions.json"
    block = {
        "action_id": "ops-1",
        "action": "block_ip",
        "duration": 6,
        "parameters": {"ip_cidr": [BLOCKED_IP]},
    }
    actions_file.write_text(json.dumps({"actions": []}))
    env = settings(tmp_path, SQREEN_ACTIONS_FILE=str(actions_file))
    with Gunicorn(APP, tmp_path, env, workers=2) as server:
        assert request(server.port, "/transfer", from_ip(BLOCKED_IP), "POST")[0] == 200
        actions_file.write_text(json.dumps({"actions": [block]}))
        until(lambda: workers_blocking(server, BLOCKED_IP, 2) == {True}, timeout=2.5)
        actions_file.write_text('{"actions": [')  # an operator's typo
        time.sleep(1.2)
        assert workers_blocking(server, BLOCKED_IP, 2) == {True}  # the last good set stays in force
        assert all_refused(server, "/transfer", BLOCKED_IP)
        # The action lasts 6 s from when each worker first saw it: then it expires.
        until(lambda: workers_blocking(server, BLOCKED_IP, 2) == {False}, timeout=8)
        assert request(server.port, "/transfer", from_ip(BLOCKED_IP), "POST")[0] == 200
    assert "SQREEN_ACTIONS_FILE" in server.output and "is not valid JSON" in server.output


def test_two_app_instances_sharing_redis_enforce_the_same_block_and_survive_redis_stopping(
    tmp_path: Path, redis_url: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, redis_server = redis_url
    hosts = []
    for name in ("host-a", "host-b"):
        folder = tmp_path / name
        folder.mkdir()
        hosts.append((folder, settings(folder, SQREEN_REDIS_URL=url)))
    with (
        Gunicorn(APP, hosts[0][0], hosts[0][1], workers=2) as a,
        Gunicorn(APP, hosts[1][0], hosts[1][1], workers=2) as b,
    ):
        sqreen_cli(hosts[0][1], "actions", "block-ip", BLOCKED_IP)
        for server in (a, b):  # every worker of both hosts enforces it within 2 s
            took = until(lambda server=server: workers_blocking(server, BLOCKED_IP, 2) == {True}, timeout=2.5)  # type: ignore[misc]
            assert took < 2.0
        redis_server.terminate()
        redis_server.wait(10)
        time.sleep(1.5)  # the refreshers find Redis gone
        for server in (a, b):
            assert all_refused(server, "/transfer", BLOCKED_IP)  # the last known set stays in force
            assert request(server.port, "/transfer", from_ip("192.0.2.10"), "POST")[0] == 200
    assert "action store (Redis" in a.output + b.output
