"""Playbooks: the file's schema and its errors, the engine's windows, distinct counts,
``after`` sequences and cool-downs on the events' own clock, counts shared through a real
Redis, and the ``playbooks check``/``test`` commands."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from _receivers import Receiver, Reply, running
from _support import Otel
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel._cli.events import main as cli
from sqreen_otel._playbooks.engine import Engine, Firing
from sqreen_otel._playbooks.evaluator import PlaybookFile
from sqreen_otel._playbooks.fields import Observed
from sqreen_otel._playbooks.react import Notifier, action_for, summary
from sqreen_otel._playbooks.schema import PlaybookError, parse_text
from sqreen_otel._playbooks.windows import MemoryWindows, RedisWindows
from sqreen_otel._responses.actions import parse_action
from sqreen_otel._responses.sources import SqliteActionStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "playbooks"

BRUTE = """
[[playbooks]]
name = "brute"
events = ["users.login.failure"]
group_by = "user.username"
threshold = "3 in 60s"
cooldown = "10m"
  [[playbooks.actions]]
  type = "block_user"
  duration = "15m"
"""


def event(name: str, at: float, ip: str = "203.0.113.9", key: str = "", **user: str) -> Observed:
    return Observed(name, at, key, user, {}, {"client_ip": ip, "path": "/login", "method": "POST"})


def fail(at: float, user: str = "ann", ip: str = "203.0.113.9") -> Observed:
    return event("users.login.failure", at, ip, username=user)


def fired(engine: Engine, events: list[Observed]) -> list[tuple[str, str, float]]:
    return [(f.playbook.name, f.group, f.at) for f in engine.observe_all(events)]


# -- the file ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "where", "reason"),
    [
        ("[[playbooks]]\nname = 'x'\nevents = []\n", 3, "playbook 'x'.events", "non-empty list"),
        (BRUTE.replace('"3 in 60s"', '"3 in forever"'), 6, "playbook 'brute'.threshold", "a duration"),
        (
            BRUTE.replace('group_by = "user.username"', 'group_by = "cookie"'),
            5,
            "playbook 'brute'.group_by",
            "unknown field",
        ),
        (
            BRUTE.replace('type = "block_user"', 'type = "nuke"'),
            8,
            "playbook 'brute'.actions[0]",
            "type: one of",
        ),
        (
            BRUTE + '  [[playbooks.where]]\n  field = "path"\n  regex = "("\n',
            11,
            "where[0]",
            "not a pattern RE2 accepts",
        ),
        (BRUTE + BRUTE, 13, "playbooks[1].name", "a second playbook"),
        ("[[playbooks]\nname = 1", 1, "", "not valid TOML"),
        (
            BRUTE.replace('cooldown = "10m"', 'cooldown = "10m"\ncolor = "red"'),
            8,
            "playbook 'brute'.color",
            "unknown key",
        ),
        (
            BRUTE + '  [[playbooks.actions]]\n  type = "notify"\n  url = "javascript:alert(1)"\n',
            11,
            "playbook 'brute'.actions[1]",
            "url",
        ),
    ],
)
def test_an_invalid_file_names_the_file_the_line_the_field_and_the_reason(
    text: str, line: int, where: str, reason: str
) -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_text(text, "rules.toml")
    error = caught.value
    assert (error.path, error.line) == ("rules.toml", line), str(error)
    assert where in error.where and reason in error.reason, str(error)
    assert str(error).startswith(f"rules.toml:{line}: ")


def test_the_shipped_playbooks_are_valid_and_documented() -> None:
    files = sorted(EXAMPLES.glob("*.toml"))
    assert files
    names = {playbook.name for path in files for playbook in parse_text(path.read_text(), str(path))}
    assert {"brute-force-account", "credential-stuffing", "success-after-failures", "signup-spam"} <= names
    docs = (EXAMPLES.parents[1] / "docs" / "playbooks.md").read_text()
    assert all(name in docs for name in names)


def test_a_reload_that_fails_keeps_the_previous_set(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(BRUTE)
    source = PlaybookFile(str(path))
    assert source.refresh() and [p.name for p in source.playbooks] == ["brute"]
    path.write_text(BRUTE.replace("brute", "renamed") + "\nthreshold = ")  # broken
    assert not source.refresh()
    assert [p.name for p in source.playbooks] == ["brute"]
    path.write_text(BRUTE.replace("brute", "renamed"))
    assert source.refresh() and [p.name for p in source.playbooks] == ["renamed"]


# -- the engine ------------------------------------------------------------------------------------


def test_a_count_fires_at_the_threshold_once_per_cooldown_and_the_window_slides() -> None:
    engine = Engine(parse_text(BRUTE), MemoryWindows())
    assert fired(engine, [fail(0), fail(10)]) == []
    assert fired(engine, [fail(20)]) == [("brute", "ann", 20)]
    assert fired(engine, [fail(21), fail(22)]) == []  # cool-down: one attacker fires once
    # after the cool-down (10 min), three failures spread over more than the window do not fire
    assert fired(engine, [fail(700), fail(740), fail(790)]) == []
    assert fired(engine, [fail(795)]) == [("brute", "ann", 795)]  # 740, 790, 795 within 60 s
    assert fired(engine, [fail(100, user="bob"), fail(101, user="bob")]) == []  # groups apart


def test_the_same_event_counted_twice_counts_once() -> None:
    engine = Engine(parse_text(BRUTE), MemoryWindows())
    same = event("users.login.failure", 1, key="event-1", username="ann")
    assert fired(engine, [same, same, same]) == []  # a batch retried after a failure


def test_distinct_values_per_group_credential_stuffing() -> None:
    rules = parse_text((EXAMPLES / "account-takeover.toml").read_text())
    engine = Engine(rules, MemoryWindows())
    same_user = [fail(i, user="ann", ip="198.51.100.1") for i in range(30)]
    assert "credential-stuffing" not in {f[0] for f in fired(engine, same_user)}
    many = [fail(100 + i, user=f"user{i}", ip="198.51.100.2") for i in range(20)]
    firings = [f for f in engine.observe_all(many) if f.playbook.name == "credential-stuffing"]
    assert [(f.group, f.reached, f.at) for f in firings] == [("198.51.100.2", 20, 119)]


def test_a_success_after_failures_and_conditions() -> None:
    rules = parse_text(
        """
[[playbooks]]
name = "takeover"
events = ["users.login.success"]
after = { events = ["users.login.failure"], threshold = 3 }
group_by = "client_ip"
window = "5m"
  [[playbooks.where]]
  field = "path"
  regex = "^/log"
  [[playbooks.where]]
  field = "method"
  in = ["POST", "PUT"]
  [[playbooks.actions]]
  type = "log"
"""
    )
    engine = Engine(rules, MemoryWindows())
    success = event("users.login.success", 50, username="ann")
    assert fired(engine, [fail(1), fail(2), success]) == []  # two failures only
    assert fired(engine, [fail(3), success._replace(time=51)]) == [("takeover", "203.0.113.9", 51)]
    other = success._replace(time=60, request={"client_ip": "192.0.2.1", "path": "/login", "method": "POST"})
    same = event("users.login.failure", 55, "192.0.2.1", key="dup", username="ann")
    assert fired(engine, [same, same, same, other]) == []  # one event counted once
    get = success._replace(time=400, request={**success.request, "method": "GET"})
    assert fired(engine, [fail(390), fail(391), fail(392), get]) == []  # a condition fails


def test_equals_and_exists_conditions_read_properties_and_identifiers() -> None:
    rules = parse_text(
        """
[[playbooks]]
name = "refunds"
events = ["refund"]
group_by = "properties.account.id"
threshold = 2
window = "1h"
  [[playbooks.where]]
  field = "properties.amount"
  equals = 500
  [[playbooks.where]]
  field = "user.email"
  exists = false
  [[playbooks.actions]]
  type = "log"
"""
    )
    engine = Engine(rules, MemoryWindows())

    def refund(at: float, amount: object, **user: str) -> Observed:
        return Observed("refund", at, "", user, {"amount": amount, "account": {"id": 7}}, {})

    assert fired(engine, [refund(1, 500), refund(2, "500", email="a@b.c"), refund(3, 499)]) == []
    assert fired(engine, [refund(4, "500")]) == [("refunds", "7", 4)]  # 500 and "500" compare as text


def test_actions_target_the_group_or_the_crossing_event() -> None:
    (brute,) = parse_text(BRUTE)
    crossing = fail(20)
    firing = Firing(brute, "ann", 3, 20.0, crossing)
    (response,) = brute.responses
    raw = action_for(firing, response, now=1000.0)
    assert raw is not None
    action = parse_action(raw, 1000.0)  # the responses' own validation accepts it
    assert action.kind == "block_user" and action.expires_at == 1000.0 + 900
    assert raw["parameters"]["users"] == [{"username": "ann"}]
    again = action_for(firing._replace(at=30.0), response, now=2000.0)
    assert again is not None and again["action_id"] == raw["action_id"]  # one action per group
    assert set(summary(firing, [action.action_id])) == {
        "playbook",
        "group_by",
        "group",
        "count",
        "threshold",
        "window_seconds",
        "fired_at",
        "actions",
    }


# -- Redis: every host's evaluator counts as one --------------------------------------------------


def test_two_evaluators_sharing_redis_count_as_one(redis_url: tuple[str, subprocess.Popen[bytes]]) -> None:
    import redis

    url, _ = redis_url
    rules = parse_text(BRUTE)
    host_a = Engine(rules, RedisWindows(redis.Redis.from_url(url), "test:"))
    host_b = Engine(rules, RedisWindows(redis.Redis.from_url(url), "test:"))
    assert fired(host_a, [fail(1, ip="192.0.2.1")]) == []
    assert fired(host_b, [fail(2, ip="192.0.2.2")]) == []
    assert fired(host_a, [fail(3, ip="192.0.2.1")]) == [("brute", "ann", 3)]  # 3 across both hosts
    assert fired(host_b, [fail(4, ip="192.0.2.2")]) == []  # the cool-down is shared too
    # one event seen by both hosts (a batch retried elsewhere) counts once
    eve = [event("users.login.failure", 100 + n, key=f"k{n}", username="eve") for n in range(3)]
    assert fired(host_a, [eve[0]]) == []
    assert fired(host_b, [eve[0], eve[1]]) == []  # two events, not three
    assert fired(host_a, [eve[2]]) == [("brute", "eve", 102)]


# -- the commands ----------------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code = cli(list(argv), out=out)
    return code, out.getvalue(), err.getvalue()


def test_check_validates_and_names_the_error(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BRUTE)
    code, out, _ = run_cli("playbooks", "check", str(good))
    assert code == 0 and "brute: users.login.failure by user.username, 3 events in 1m" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(BRUTE.replace('"3 in 60s"', "0"))
    code, out, err = run_cli("playbooks", "check", str(bad))
    assert code == 1 and f"{bad}:6: playbook 'brute'.threshold: required: a count from 1" in err


def test_test_replays_explorer_json_lines_and_acts_on_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(BRUTE)
    lines = [
        {
            "time": f"2026-12-01T10:00:{second:02d}+00:00",
            "name": "users.login.failure",
            "user": {"username": "ann"},
            "client_ip": "203.0.113.9",
            "properties": {},
        }
        for second in (1, 5, 9, 30)
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = run_cli("playbooks", "test", str(rules), "--events", str(events), "--json")
    assert code == 0, err
    (firing,) = [json.loads(line) for line in out.splitlines()]
    assert firing["playbook"] == "brute" and firing["group"] == "ann" and firing["count"] == 3
    assert firing["time"] == "2026-12-01T10:00:09Z"
    assert firing["would"] == ["block_user username=ann for 900s"]
    events.write_text("not json\n")
    code, _, err = run_cli("playbooks", "test", str(rules), "--events", str(events))
    assert code == 1 and f"{events}:1: not an event" in err


# -- the live evaluator, in-process: the real pipeline, the real stores -------------------------


def login_failures(otel: Otel, ip: str, users: list[str]) -> None:
    for user in users:
        attributes = {"client.address": ip, "http.request.method": "POST", "url.path": "/login"}
        with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER, attributes=attributes):
            sqreen_otel.auth_track(False, username=user)


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.02)


def test_the_live_evaluator_waits_out_an_unusable_action_store_then_fires(tmp_path: Path, otel: Otel) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(per_ip_rules(3))
    blocker = tmp_path / "actions"
    blocker.write_text("a file where the store's folder should be: the action store is unusable")
    actions = blocker / "actions.db"
    sqreen_otel.configure(
        tracer_provider=otel.provider,
        exporter="local",
        local_store=str(tmp_path / "events.db"),
        actions_store=str(actions),
        playbooks_file=str(rules),
        spool_interval=0.05,
        playbooks_interval=0.05,
    )
    login_failures(otel, "203.0.113.50", ["a", "b", "c"])
    sqreen_otel.flush(5)
    wait_for(lambda: sqreen_otel.stats().get("playbook_evaluation_retries", 0) >= 1)
    assert sqreen_otel.stats().get("playbook_firings", 0) == 0
    blocker.unlink()
    blocker.mkdir()  # the store comes back: the retried batch fires the playbook
    wait_for(lambda: sqreen_otel.stats().get("playbook_firings", 0) == 1, timeout=20)
    with closing(SqliteActionStore(str(actions))) as store:
        (action,) = store.list_actions()
    assert isinstance(action, dict)
    assert action["action"] == "block_ip" and action["parameters"]["ip_cidr"] == ["203.0.113.50/32"]
    login_failures(otel, "203.0.113.50", ["d"])  # within the cool-down: no second firing
    sqreen_otel.flush(5)
    time.sleep(0.3)
    assert sqreen_otel.stats()["playbook_firings"] == 1


def test_a_notification_is_retried_and_carries_no_event_data(tmp_path: Path) -> None:
    with running(Receiver([Reply(status=503)], Reply(status=200))) as webhook:
        notifier = Notifier(lambda payload: payload)
        (playbook,) = parse_text(BRUTE)
        firing = Firing(playbook, "ann", 3, 1_700_000_000.0, fail(1_700_000_000.0))
        notifier.send(webhook.url + "?key=hook-secret", summary(firing, ["playbook-brute-x"]))
        (delivered,) = webhook.wait_for(1, timeout=10)
        assert len(webhook.attempts) == 2  # refused with a 503 first, retried after a second
    body = json.loads(delivered.body)
    assert body == {
        "playbook": "brute",
        "group_by": "user.username",
        "group": "ann",
        "count": 3,
        "threshold": 3,
        "window_seconds": 60.0,
        "fired_at": "2023-11-14T22:13:20Z",
        "actions": ["playbook-brute-x"],
    }


def per_ip_rules(threshold: int) -> str:
    return f"""
[[playbooks]]
name = "per-ip"
events = ["users.login.failure"]
group_by = "client_ip"
threshold = "{threshold} in 1m"
  [[playbooks.actions]]
  type = "block_ip"
  duration = "1h"
"""


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_events_read_out_of_time_order_fire_as_a_replay_sorted_by_time_does(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Workers write to the store in their own rhythm: the evaluator reads events in store
    order, not time order. The last event read may be the oldest: it completes the window that
    ends at the newest, as in a replay sorted by time (one firing, same group)."""
    if backend == "redis":
        import redis

        url, _ = request.getfixturevalue("redis_url")
        windows: MemoryWindows | RedisWindows = RedisWindows(redis.Redis.from_url(url), "order:")
    else:
        windows = MemoryWindows()
    rules = parse_text(BRUTE)
    shuffled = [fail(t) for t in (5.0, 9.0, 1.0)]  # store order: the oldest comes last
    live = [(f.playbook.name, f.group) for f in Engine(rules, windows).observe_all(shuffled)]
    replayed = [
        (f.playbook.name, f.group) for f in Engine(rules, MemoryWindows()).observe_all(sorted(shuffled))
    ]
    assert live == replayed == [("brute", "ann")]
    late = fail(200.0)  # far from the others: still one of 3 only
    assert Engine(rules, MemoryWindows()).observe_all([fail(300.0), fail(301.0), late]) == []
