"""Playbooks end to end: a real Flask app under gunicorn with 3 workers on 127.0.0.1, attacks
scripted over all its workers, the evaluator in one of them, enforcement on every worker, a
webhook receiver on 127.0.0.1, two hosts sharing a real Redis, and the replay of the same
events through ``sqreen-otel playbooks test``."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _receivers import Receiver, running
from _responses_support import (
    APP,
    effects,
    from_ip,
    settings,
    sqreen_cli,
    stored,
    until,
    workers_blocking,
)
from _servers import Gunicorn, request

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "playbooks"

ATTACKER = "198.51.100.66"


def per_ip(threshold: int, webhook: str | None = None) -> str:
    notify = f'  [[playbooks.actions]]\n  type = "notify"\n  url = "{webhook}"\n' if webhook else ""
    return f"""
[[playbooks]]
name = "failures-per-ip"
events = ["users.login.failure"]
group_by = "client_ip"
threshold = "{threshold} in 1m"
  [[playbooks.actions]]
  type = "block_ip"
  duration = "10m"
  [[playbooks.actions]]
  type = "log"
{notify}"""


def signins(server: Gunicorn, ip: str, users: list[str], sleep: float = 0.3) -> list[int]:
    """Failed logins, concurrently (slow ones: they spread over the workers); the statuses."""
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        calls = [
            pool.submit(
                request,
                server.port,
                f"/signin?user={user}&password=hunter2-secret&sleep={sleep}",
                from_ip(ip),
                "POST",
            )
            for user in users
        ]
        return [call.result()[0] for call in calls]


def workers_that_served(side: Path) -> set[str]:
    return {line.rsplit(" ", 1)[1] for line in effects(side) if line.startswith("signin ")}


def replayed(env: dict[str, str], playbooks: Path) -> set[tuple[str, str]]:
    lines = sqreen_cli(env, "playbooks", "test", str(playbooks), "--from-store", "--json").splitlines()
    return {(record["playbook"], record["group"]) for record in map(json.loads, lines)}


def fired_live(store: Path) -> set[tuple[str, str]]:
    return {
        (name.removeprefix("sq.playbook."), event["properties"]["group"])
        for name in (
            "sq.playbook.failures-per-ip",
            "sq.playbook.brute-force-account",
            "sq.playbook.credential-stuffing",
        )
        for event in stored(store, name)
    }


def test_a_brute_force_over_all_workers_is_blocked_on_every_worker_right_after_the_threshold(
    tmp_path: Path,
) -> None:
    with running(Receiver()) as webhook:
        playbooks = tmp_path / "playbooks.toml"
        playbooks.write_text(per_ip(6, webhook.url + "?token=webhook-secret"))
        env = settings(tmp_path, SQREEN_PLAYBOOKS_FILE=str(playbooks))
        side = tmp_path / "effects.txt"
        with Gunicorn(APP, tmp_path, env, workers=3) as server:
            assert signins(server, ATTACKER, [f"user{n}" for n in range(5)]) == [401] * 5
            time.sleep(1.5)  # five failures evaluated: below the threshold, nobody is blocked
            assert workers_blocking(server, ATTACKER) == {False}
            assert request(server.port, "/transfer", from_ip(ATTACKER), "POST")[0] == 200
            assert signins(server, ATTACKER, ["user5"], sleep=0) == [401]  # the sixth crosses it
            crossed = time.monotonic()
            until(lambda: workers_blocking(server, ATTACKER) == {True}, timeout=3.0)
            reaction = time.monotonic() - crossed
            assert request(server.port, "/transfer", from_ip(ATTACKER), "POST")[0] == 403
            assert request(server.port, "/transfer", from_ip("192.0.2.44"), "POST")[0] == 200
            (notification,) = webhook.wait_for(1)
        assert len(workers_that_served(side)) >= 2, "the attack was spread over several workers"
    print(f"enforced on every worker {reaction:.2f}s after the crossing request")
    body = json.loads(notification.body)
    assert body["playbook"] == "failures-per-ip" and body["group"] == ATTACKER and body["count"] == 6
    assert body["actions"] == [f"{body['actions'][0]}"] and body["actions"][0].startswith("playbook-")
    raw = notification.body.decode()
    assert (
        "hunter2" not in raw and "user" not in json.dumps(body.get("group")) and "webhook-secret" not in raw
    )
    (event,) = stored(tmp_path / "events.db", "sq.playbook.failures-per-ip")
    assert event["properties"]["group"] == ATTACKER and event["properties"]["count"] == 6
    assert event["properties"]["window_seconds"] == 60
    assert "playbook failures-per-ip fired" in server.output and "webhook-secret" not in server.output
    # The same events replayed by `playbooks test` fire the same playbook for the same key.
    assert replayed(env, playbooks) == fired_live(tmp_path / "events.db") == {("failures-per-ip", ATTACKER)}


def test_the_shipped_playbooks_block_a_user_at_identify_and_credential_stuffing_by_ip(tmp_path: Path) -> None:
    playbooks = EXAMPLES / "account-takeover.toml"
    env = settings(tmp_path, SQREEN_PLAYBOOKS_FILE=str(playbooks))
    side = tmp_path / "effects.txt"
    with Gunicorn(APP, tmp_path, env, workers=3) as server:
        # brute force on one account, from changing IPs: the user is blocked, not the IPs
        for n in range(10):
            signins(server, f"192.0.2.{n + 1}", ["victim"], sleep=0)
        time.sleep(0.2)
        until(lambda: workers_blocking(server, "", username="victim") == {True}, timeout=3.0)
        enforced_from = len(effects(side))
        for _ in range(6):  # every worker refuses the user at identify: the rest of the view never runs
            assert request(server.port, "/signin?user=victim&ok=1", from_ip("192.0.2.99"), "POST")[0] == 403
        assert request(server.port, "/signin?user=someone&ok=1", from_ip("192.0.2.99"), "POST")[0] == 200
        # credential stuffing: 20 distinct users from one IP
        assert set(signins(server, ATTACKER, [f"account{n}" for n in range(19)], sleep=0.1)) == {401}
        time.sleep(1.0)
        assert workers_blocking(server, ATTACKER) == {False}  # 19 distinct: not yet
        signins(server, ATTACKER, ["account19"], sleep=0)
        until(lambda: workers_blocking(server, ATTACKER) == {True}, timeout=3.0)
    assert not any(line.startswith("signin victim ok") for line in effects(side)[enforced_from:])
    refusals = stored(tmp_path / "events.db", "sq.action.block_user")
    assert len(refusals) >= 6 and all(event["user"] == {"username": "victim"} for event in refusals)
    assert (
        replayed(env, playbooks)
        == fired_live(tmp_path / "events.db")
        == {
            ("brute-force-account", json.dumps({"username": "victim"})),
            ("credential-stuffing", ATTACKER),
        }
    )


def test_two_app_instances_sharing_redis_count_as_one(
    tmp_path: Path, redis_url: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, _ = redis_url
    playbooks = tmp_path / "playbooks.toml"
    playbooks.write_text(per_ip(6))
    hosts = []
    for name in ("host-a", "host-b"):
        folder = tmp_path / name
        folder.mkdir()
        hosts.append((folder, settings(folder, SQREEN_REDIS_URL=url, SQREEN_PLAYBOOKS_FILE=str(playbooks))))
    with (
        Gunicorn(APP, hosts[0][0], hosts[0][1], workers=2) as a,
        Gunicorn(APP, hosts[1][0], hosts[1][1], workers=2) as b,
    ):
        signins(a, ATTACKER, ["a1", "a2", "a3"])
        signins(b, ATTACKER, ["b1", "b2"])
        time.sleep(1.5)
        assert workers_blocking(a, ATTACKER, 2) == workers_blocking(b, ATTACKER, 2) == {False}  # 5 of 6
        signins(b, ATTACKER, ["b3"], sleep=0)  # the sixth, on the other host
        until(lambda: workers_blocking(a, ATTACKER, 2) == {True}, timeout=3.0)
        until(lambda: workers_blocking(b, ATTACKER, 2) == {True}, timeout=3.0)
    # each host's store holds its own events: neither reaches 6 alone, together they did
    for _, env in hosts:
        assert replayed(env, playbooks) == set()
