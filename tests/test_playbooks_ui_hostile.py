"""Playbooks and the web Event Explorer, attacked: a regex on hostile values, events stored
late, a second target of the same group, a Redis blip between the claim and the action,
hostile files and requests, and the explorer opened as localhost. Each test reproduces a
defect an adversarial review found; all use real servers on 127.0.0.1 where one is involved."""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sqreen_otel._cli.playbooks import replay
from sqreen_otel._playbooks.engine import Engine
from sqreen_otel._playbooks.fields import Observed
from sqreen_otel._playbooks.react import Notifier, Reactor
from sqreen_otel._playbooks.schema import PlaybookError, parse_text
from sqreen_otel._playbooks.windows import MemoryWindows
from sqreen_otel._responses.actions import parse_action
from sqreen_otel._responses.sources import SqliteActionStore
from sqreen_otel._shipping import store as _store
from sqreen_otel._ui.api import Api, Context
from sqreen_otel._ui.server import ExplorerServer

TOKEN = "t" * 43


def one_playbook(body: str) -> str:
    return "[[playbooks]]\n" + textwrap.dedent(body).strip() + "\n"


# -- playbooks: the engine ----------------------------------------------------------------------


def test_a_where_regex_is_not_linear_in_hostile_event_values(tmp_path: Path) -> None:
    """HIGH. ``where.regex`` runs Python's backtracking ``re`` on up to 4096 characters of an
    attacker-controlled value (schema.py Condition.holds): a classic pattern such as
    ``^(\\w+\\s?)*$`` against a 30-character user agent takes minutes, holding the GIL, in the
    app process that evaluates (the whole worker stalls; when its lease lapses the next worker
    takes the same batch and stalls too). The 4096-character cut does not bound the cost."""
    script = tmp_path / "redos.py"
    script.write_text(
        textwrap.dedent(
            '''
            from sqreen_otel._playbooks.schema import parse_text
            from sqreen_otel._playbooks.engine import Engine
            from sqreen_otel._playbooks.windows import MemoryWindows
            from sqreen_otel._playbooks.fields import Observed
            playbooks = parse_text("""
            [[playbooks]]
            name = "bots"
            events = ["e"]
            group_by = "client_ip"
            threshold = "1 in 1m"
              [[playbooks.where]]
              field = "user_agent"
              regex = '^(\\w+\\s?)*$'
              [[playbooks.actions]]
              type = "log"
            """)
            hostile = "a" * 30 + "!"
            event = Observed("e", 1.0, "k", {}, {}, {"client_ip": "192.0.2.1", "user_agent": hostile})
            Engine(playbooks, MemoryWindows()).observe(event)
            '''
        )
    )
    try:
        subprocess.run([sys.executable, str(script)], cwd=tmp_path, timeout=3, check=True)  # not the repo
    except subprocess.TimeoutExpired:
        pytest.fail("one hostile 31-character user agent kept the evaluator busy for more than 3 s")


PAIR = one_playbook(
    """
    name = "pair"
    events = ["e"]
    group_by = "client_ip"
    threshold = "2 in 10s"
      [[playbooks.actions]]
      type = "log"
    """
)


def event(key: str, at: float, ip: str = "192.0.2.1") -> Observed:
    return Observed("e", at, key, {}, {}, {"client_ip": ip})


def test_an_event_stored_late_does_not_count_with_events_outside_its_window() -> None:
    """MEDIUM. The live evaluator sees events in store order (row id), which is not time order
    (several processes spool into the store; a process that could not write holds its events
    and writes them later). MemoryWindows._live trims by insertion order and counts members
    newer than the event (windows.py _add/_live; the Redis script's ZCOUNT (horizon +inf
    likewise): two events 50 s apart fire a "2 in 10s" playbook, and `playbooks test` (which
    sorts by time) says nothing would fire."""
    playbooks = parse_text(PAIR)
    live = Engine(playbooks, MemoryWindows())
    store_order = [event("a", 100.0), event("b", 50.0)]
    fired_live = [firing.at for e in store_order for firing in live.observe(e)]
    fired_replay = [firing.at for firing in replay(playbooks, store_order)]
    assert fired_replay == []
    assert fired_live == fired_replay, "events 50 s apart fired a 10 s window"


def test_a_group_that_fires_again_from_another_ip_does_not_lift_the_first_ips_block(tmp_path: Path) -> None:
    """MEDIUM. The action id depends on the playbook and the group only (react.py action_id,
    action_for): with ``group_by = "user.email"`` and ``block_ip``, a second firing after the
    cool-down from another IP *replaces* the first IP's 1 h block (INSERT OR REPLACE / HSET),
    unblocking the first attacker after minutes. Same with group_by client_ip + block_user
    (the second user's block replaces the first user's). The docs promise "extends its block"."""
    playbooks = parse_text(
        one_playbook(
            """
            name = "one-account"
            events = ["users.login.failure"]
            group_by = "user.email"
            threshold = "3 in 5m"
            cooldown = "5m"
              [[playbooks.actions]]
              type = "block_ip"
              duration = "1h"
            """
        )
    )
    store = SqliteActionStore(str(tmp_path / "actions.db"))
    now = time.time()
    engine = Engine(playbooks, MemoryWindows())
    reactor = Reactor(lambda: store, Notifier(lambda payload: payload), clock=lambda: now)
    serial = 0
    for start, ip in ((0.0, "198.51.100.1"), (400.0, "198.51.100.2")):  # the second after the cool-down
        for offset in range(3):
            serial += 1
            failure = Observed(
                "users.login.failure",
                now + start + offset,
                f"k{serial}",
                {"email": "ann@example.com"},
                {},
                {"client_ip": ip},
            )
            for firing in engine.observe(failure):
                reactor.react(firing)
    blocked = {str(network) for raw in store.list_actions() for network in parse_action(raw, now).networks}
    store.close()
    assert blocked == {"198.51.100.1/32", "198.51.100.2/32"}, f"only {blocked} still blocked"


# -- playbooks: the file and the CLI ------------------------------------------------------------


def test_a_deeply_nested_playbook_file_is_a_playbook_error_not_a_recursion_error() -> None:
    """LOW. tomllib recurses per nesting level: 5,000 '[' (10 KB, far below the 1 MiB cap)
    raise RecursionError out of parse_text (schema.py:120 catches only TOMLDecodeError):
    `playbooks check` prints a traceback, the UI dry run answers 500, the live evaluator's
    refresh (which catches PlaybookError only) raises into the drainer."""
    with pytest.raises(PlaybookError):
        parse_text("x = " + "[" * 5000 + "]" * 5000)


def test_playbooks_test_reports_a_deeply_nested_jsonl_line_rather_than_a_traceback(tmp_path: Path) -> None:
    """LOW. _from_lines catches ValueError only: json.loads' RecursionError escapes run()."""
    playbooks = tmp_path / "p.toml"
    playbooks.write_text(PAIR)
    events = tmp_path / "events.jsonl"
    events.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("sqreen-otel")), "playbooks", "test", str(playbooks), "--events",
         str(events)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr, completed.stderr[-300:]
    assert "events.jsonl:1" in completed.stderr


def test_error_lines_are_right_when_a_string_holds_a_playbooks_header() -> None:
    """LOW. _Lines finds ``[[playbooks]]`` with a line regex, also inside a multi-line string
    (a description quoting a header): every later playbook's errors name the wrong line."""
    text = textwrap.dedent(
        '''\
        [[playbooks]]
        name = "a"
        description = """
        [[playbooks]]
        """
        events = "e"
        group_by = "client_ip"
        threshold = "1 in 1m"
        [[playbooks.actions]]
        type = "log"
        [[playbooks]]
        name = "b"
        events = "e"
        group_by = "bogus"
        threshold = "1 in 1m"
        [[playbooks.actions]]
        type = "log"
        '''
    )
    with pytest.raises(PlaybookError) as raised:
        parse_text(text, "f.toml")
    assert raised.value.line == 14, str(raised.value)


# -- the web Event Explorer ---------------------------------------------------------------------


def make_store(path: Path, rows: list[dict[str, Any]]) -> None:
    _store.connect(str(path)).close()
    db = sqlite3.connect(path)
    now = time.time_ns()
    for index, row in enumerate(rows):
        values = {
            "event_key": f"k{index}", "time_ns": now - index * 1_000_000, "name": "users.login.failure",
            "type": "auth", "user": "{}", "client_ip": "192.0.2.1", "user_agent": "ua", "method": "POST",
            "path": "/login", "route": "/login", "parameters": "{}", "properties": "{}", "trace_id": "",
            "span_id": "", "service": "shop", "stored_ns": now, "origin": "",
        }  # fmt: skip
        values.update(row)
        db.execute(
            f"INSERT INTO events ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
            list(values.values()),
        )
    db.commit()
    db.close()


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[ExplorerServer, SqliteActionStore]]:
    make_store(
        tmp_path / "events.db",
        [{"properties": json.dumps({'say "hi"': "yes", "plain": "yes"})}],
    )
    actions = SqliteActionStore(str(tmp_path / "actions.db"))
    context = Context(str(tmp_path / "events.db"), lambda: actions, None, None, False)
    server = ExplorerServer(("127.0.0.1", 0), Api(context), TOKEN)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, actions
    finally:
        server.shutdown()
        server.server_close()
        actions.close()


def call(
    server: ExplorerServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": f"127.0.0.1:{port}", "Authorization": f"Bearer {TOKEN}", **(headers or {})}
        if body is not None and "Content-Length" not in sent:
            sent["Content-Length"] = str(len(body))
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_page_opened_as_localhost_can_block(ui: tuple[ExplorerServer, SqliteActionStore]) -> None:
    """MEDIUM (usability). The server accepts ``Host: localhost:PORT`` (server.py hosts), so the
    page loads and reads at http://localhost:PORT (an SSH tunnel, a habit), but every POST
    from it carries ``Origin: http://localhost:PORT`` and is refused as cross-origin
    (server.py _post compares with the one bound origin): "Block", "Unblock" and the dry run
    all fail with "cross-origin request refused" (seen in headless Chromium)."""
    server, _ = ui
    port = server.server_address[1]
    body = json.dumps({"action": "block_ip", "ip": "198.51.100.7", "duration": "1h"}).encode()
    headers = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    status, answer = call(
        server, "POST", "/api/actions", {**headers, "Content-Type": "application/json"}, body
    )
    assert status == 200, answer


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/api/event?id=99999999999999999999", {}, None),  # OverflowError binding the id
        ("/api/actions", {"Content-Type": "application/json", "Content-Length": "abc"}, b"{}"),  # int()
    ],
)
def test_bad_requests_are_400_not_500(
    ui: tuple[ExplorerServer, SqliteActionStore], path: str, headers: dict[str, str], body: bytes | None
) -> None:
    """LOW. api.py event() and server.py _post let OverflowError/ValueError reach the generic
    handler: a 500 and a logged traceback for a malformed request."""
    server, _ = ui
    status, _answer = call(server, "POST" if body is not None else "GET", path, headers, body)
    assert status == 400


def test_group_by_a_property_whose_name_has_a_quote(ui: tuple[ExplorerServer, SqliteActionStore]) -> None:
    """LOW. query.json_path quotes with json.dumps (``$."say \\"hi\\""``), but SQLite's JSON path
    does not unescape ``\\"``: the property is silently never found (every group is NULL, a
    property filter matches nothing)."""
    server, _ = ui
    status, answer = call(
        server, "GET", "/api/groups?by=" + 'properties.say "hi"'.replace(" ", "%20").replace('"', "%22")
    )
    assert status == 200
    assert [group["value"] for group in json.loads(answer)["groups"]] == ["yes"]


def test_block_ip_from_the_page_takes_an_address_not_the_whole_internet(
    ui: tuple[ExplorerServer, SqliteActionStore],
) -> None:
    """LOW (hardening). add_action says "ip: an IP address" but checks only the part before
    '/', then stores the CIDR: ``0.0.0.0/0`` or ``::/0`` (a hand-edited #view=ip&ip=... link)
    blocks every client with one click."""
    server, actions = ui
    body = json.dumps({"action": "block_ip", "ip": "0.0.0.0/0", "duration": "1h"}).encode()
    status, _ = call(server, "POST", "/api/actions", {"Content-Type": "application/json"}, body)
    assert status == 400
    assert actions.list_actions() == []


def test_a_redis_blip_after_the_claim_does_not_cancel_the_firing_for_the_cool_down(
    tmp_path: Path, redis_url: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """MEDIUM. The engine claims the cool-down (SET NX in Redis) before the actions are written.
    When Redis stalls right then, the action write fails (ActionsFailed), and so may the
    release: the batch is retried and crosses again. The claim holds the crossing event's id,
    so the retry of the same crossing takes it again and the block is written. Real
    redis-server; CLIENT PAUSE WRITE stands for the network blip."""
    import redis

    from sqreen_otel._http.request_context import RequestContext
    from sqreen_otel._playbooks.evaluator import PlaybookEvaluator, PlaybookFile
    from sqreen_otel._playbooks.windows import RedisWindows
    from sqreen_otel._responses.sources import RedisActionStore
    from sqreen_otel._shipping.event_model import SecurityEvent
    from sqreen_otel._shipping.export_result import ExportStatus

    url, _ = redis_url
    admin = redis.Redis.from_url(url)
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        one_playbook(
            """
            name = "p"
            events = "e"
            group_by = "client_ip"
            threshold = "2 in 1m"
            cooldown = "1h"
              [[playbooks.actions]]
              type = "block_ip"
              duration = "1h"
            """
        )
    )
    store = RedisActionStore(url)
    blips = [True]

    def blipping_store() -> RedisActionStore:
        if blips and blips.pop():  # the first write meets a Redis that stalls (then the release)
            admin.execute_command("CLIENT", "PAUSE", "2000", "WRITE")  # type: ignore[no-untyped-call]
        return store

    source = PlaybookFile(str(rules))
    source.refresh()
    evaluator = PlaybookEvaluator(
        source,
        lambda: RedisWindows(client, "t:"),
        Reactor(blipping_store, Notifier(lambda payload: payload)),
    )
    now_ns = time.time_ns()
    batch = [
        SecurityEvent(
            "e", "track", now_ns + i, {}, {}, RequestContext("198.51.100.5", None, None, None, None, {}),
            "0" * 32, "0" * 16, f"k{i}",
        )
        for i in range(2)
    ]  # fmt: skip
    assert evaluator.export_events(batch).status is ExportStatus.RETRY  # Redis stalled
    time.sleep(2.2)
    assert evaluator.export_events(batch).status is ExportStatus.SUCCESS  # the retried batch
    with closing(store):
        assert len(store.list_actions()) == 1, (
            "the retried batch blocked nobody: the claim outlived the failure"
        )
