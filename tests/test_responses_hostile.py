"""Security responses against hostile input (an adversarial review): hostile actions, a
corrupted or locked store, passlist bypasses, matching corner cases. Real gunicorn on
127.0.0.1, real SQLite files, a real redis-server."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from _servers import Gunicorn, free_port, request

from sqreen_otel._http.client_ip import AMBIGUOUS, PEER, ClientIP
from sqreen_otel._responses.actions import parse_action, parse_actions
from sqreen_otel._responses.enforcement import ResponseSettings, _ip_passlisted
from sqreen_otel._responses.index import ActionIndex
from sqreen_otel._responses.registry import ActionRegistry
from sqreen_otel._responses.sources import RedisActionStore, SqliteActionStore, StoreUnavailable
from sqreen_otel._stats import stats

NOW = 1_800_000_000.0
BLOCKED_IP = "198.51.100.7"
APP = "hostile_responses_app:app"


_Closable = TypeVar("_Closable")
_OPEN: list[Any] = []  # stores and connections a test opened: closed at its end


def _opened(thing: _Closable) -> _Closable:
    _OPEN.append(thing)
    return thing


@pytest.fixture(autouse=True)
def _close_what_was_opened() -> Iterator[None]:
    """Python 3.13 warns about every SQLite connection left to the collector (and the suite
    turns warnings into errors): each store and connection a test opens is closed after it."""
    yield
    while _OPEN:
        with contextlib.suppress(Exception):
            _OPEN.pop().close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))}
    env.update(extra)
    return env


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqreen_otel", *argv],
        env=clean_env(**env),
        cwd=tempfile.gettempdir(),  # never the repository root (its sources would shadow the install)
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_script(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (configure() is process-global)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean_env(SQREEN_EXPORTER="none", **env),
        cwd=tempfile.gettempdir(),  # never the repository root (`python -P` needs 3.11)
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def block_ip(action_id: str, ip: str, **extra: Any) -> dict[str, Any]:
    return {"action_id": action_id, "action": "block_ip", "parameters": {"ip_cidr": [ip]}, **extra}


# -- a hostile action is rejected alone ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(block_ip("big-duration", "203.0.113.9", duration=10**400), id="duration-400-digit-int"),
        pytest.param(
            block_ip("big-created", "203.0.113.9", created_at=10**400), id="created_at-400-digit-int"
        ),
        pytest.param(
            {
                "action_id": "bad-url",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["203.0.113.9"], "url": "http://[::1"},
            },
            id="redirect-url-invalid-ipv6",
        ),
        pytest.param(
            {
                "action_id": "bad-url2",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["203.0.113.9"], "url": "http://[evil]/"},
            },
            id="redirect-url-bracketed-name",
        ),
        pytest.param(
            {
                "action_id": "bad-port",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["203.0.113.9"], "url": "https://example.com:99999/"},
            },
            id="redirect-url-port-out-of-range",
        ),
    ],
)
def test_a_hostile_action_is_rejected_alone(raw: dict[str, Any]) -> None:
    """docs/responses.md: 'Each action is validated alone: a bad one is rejected ... the others
    apply'. float(10**400) raises OverflowError and urlsplit a ValueError: neither may escape."""
    good = block_ip("good", BLOCKED_IP)
    actions, rejected = parse_actions([good, raw], {}, NOW)
    assert [a.action_id for a in actions] == ["good"]
    assert [r[0] for r in rejected] == [raw["action_id"]]


def test_configure_survives_a_hostile_actions_file_and_enforces_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    # a 400-digit integer is valid JSON; json.loads gives an int that float() cannot convert
    good = json.dumps(block_ip("good", BLOCKED_IP))
    bad = json.dumps(block_ip("bad", "203.0.113.9", duration=123)).replace("123", "1" + "0" * 400)
    path.write_text(f'{{"actions": [{good}, {bad}]}}')
    done = run_script(
        f"""
        import sqreen_otel
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        sqreen_otel.configure()
        print("blocked", sqreen_otel.is_blocked(ip="{BLOCKED_IP}"))
        """,
        {"SQREEN_ACTIONS_FILE": str(path), "SQREEN_LOCAL_STORE": str(tmp_path / "events.db")},
    )
    assert done.returncode == 0, done.stderr[-2000:]  # not an OverflowError out of configure()
    assert "blocked True" in done.stdout


def test_the_cli_refuses_an_invalid_redirect_url_without_a_traceback(tmp_path: Path) -> None:
    env = {"SQREEN_LOCAL_STORE": str(tmp_path / "events.db")}
    added = cli(env, "actions", "redirect-ip", "192.0.2.1", "--url", "http://[::1")
    assert added.returncode == 1
    assert "Traceback" not in added.stderr, added.stderr[-1500:]
    assert "invalid action: parameters.url" in added.stderr


# -- a corrupted store never kills the refresher ----------------------------------------------------


def _refresher_alive() -> bool:
    return any(t.name == "sqreen_otel.actions" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("corruption", ["meta-row-deleted", "deeply-nested-body"])
def test_a_corrupted_sqlite_store_never_kills_the_refresher(tmp_path: Path, corruption: str) -> None:
    """store.version() did ``fetchone()[0]`` (TypeError when the meta row is gone) and
    list_actions ``json.loads`` (RecursionError on deep JSON): neither was StoreUnavailable nor
    ValueError, so ``refresh()`` raised, and the refresher thread died for good."""
    path = str(tmp_path / "actions.db")
    store = _opened(SqliteActionStore(path))
    store.put(block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None))
    registry = ActionRegistry(None, store, refresh_s=0.05)
    registry.load_now()
    assert registry.current().match_ip(BLOCKED_IP, time.time()) is not None
    db = _opened(sqlite3.connect(path, isolation_level=None))
    if corruption == "meta-row-deleted":
        db.execute("DELETE FROM meta")
    else:
        body = '{"action_id":"deep","x":' + "[" * 100_000 + "]" * 100_000 + "}"
        db.execute("INSERT INTO actions VALUES ('deep', ?, NULL)", (body,))
        db.execute("UPDATE meta SET value = value + 1")
    try:
        registry.refresh()  # must not raise: the last known set stays in force
        assert registry.current().match_ip(BLOCKED_IP, time.time()) is not None
        time.sleep(0.2)
        assert _refresher_alive()
        # the store keeps working: a write (restoring the version row) reaches the next refresh
        _opened(SqliteActionStore(path)).put(
            block_ip("later", "203.0.113.9", created_at=time.time(), duration=None)
        )
        registry.refresh()
        assert registry.current().match_ip("203.0.113.9", time.time()) is not None
        assert registry.current().match_ip(BLOCKED_IP, time.time()) is not None
    finally:
        registry.stop()


class _FailingFile:
    """A source whose every check raises (what no source should do): the refresher outlives it."""

    path = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def changed(self) -> bool:
        self.calls += 1
        raise RuntimeError("boom")


@pytest.mark.internal_errors_expected
def test_the_refresher_and_configure_survive_any_exception_in_a_refresh() -> None:
    source = _FailingFile()
    registry = ActionRegistry(source, None, refresh_s=0.05)  # type: ignore[arg-type]
    registry.load_now()  # configure()'s first load: must not raise
    try:
        registry.current()  # starts the refresher
        deadline = time.monotonic() + 5
        while source.calls < 5:
            assert time.monotonic() < deadline, "the refresher stopped refreshing"
            time.sleep(0.02)
        assert _refresher_alive()
    finally:
        registry.stop()
    assert stats.snapshot().get("internal_errors", 0) >= 5  # counted (and logged, rate-limited)


def test_one_non_json_entry_in_the_store_does_not_disable_the_whole_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A single hand-written or garbled body made list_actions raise ValueError: the whole store
    was 'unavailable', so at start-up not one store action was enforced (fail open), and later
    ones never arrived. Now that body alone is rejected (logged with its key, counted)."""
    path = str(tmp_path / "actions.db")
    store = _opened(SqliteActionStore(path))
    store.put(block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None))
    db = _opened(sqlite3.connect(path, isolation_level=None))
    db.execute("INSERT INTO actions VALUES ('garbled', 'not json', NULL)")
    db.execute("UPDATE meta SET value = value + 1")
    registry = ActionRegistry(None, _opened(SqliteActionStore(path)))
    registry.load_now()
    registry.stop()
    assert registry.current().match_ip(BLOCKED_IP, time.time()) is not None
    assert stats.snapshot().get("actions_rejected") == 1
    assert stats.snapshot().get("action_store_unavailable") is None
    assert "rejected action garbled: its stored body is not valid JSON" in caplog.text


def test_the_cli_lists_a_store_holding_a_corrupt_entry_without_a_traceback(tmp_path: Path) -> None:
    store = tmp_path / "actions.db"
    _opened(SqliteActionStore(str(store))).put(
        block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None)
    )
    db = _opened(sqlite3.connect(store, isolation_level=None))
    db.execute("INSERT INTO actions VALUES ('junk', 'not json', NULL)")
    env = {"SQREEN_ACTIONS_STORE": str(store), "SQREEN_LOCAL_STORE": str(tmp_path / "events.db")}
    listed = cli(env, "actions", "list")
    assert "Traceback" not in listed.stderr, listed.stderr[-1500:]
    assert listed.returncode == 0
    assert "good" in listed.stdout
    assert "junk" in listed.stdout and "invalid" in listed.stdout


# -- Redis ------------------------------------------------------------------------------------------


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is installed by `make test` (Debian's redis-server)"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"action_id": "junk", "x": ' + "[" * 100_000 + "}"])
def test_the_cli_can_still_add_a_block_when_redis_holds_a_corrupt_entry(
    tmp_path: Path, redis_url: str, body: str
) -> None:
    """RedisActionStore.put() pruned by json.loads-ing every body: JSONDecodeError or
    AttributeError ('list' has no .get) escaped as a traceback, and no block could be added;
    ``actions list`` crashed on ``dict(raw)``."""
    import redis

    redis.Redis.from_url(redis_url).hset("sqreen-otel:actions", "junk", body)
    env = {"SQREEN_REDIS_URL": redis_url, "SQREEN_LOCAL_STORE": str(tmp_path / "events.db")}
    added = cli(env, "actions", "block-ip", BLOCKED_IP, "--id", "ops-1")
    assert added.returncode == 0, added.stderr[-1500:]
    listed = cli(env, "actions", "list")
    assert "Traceback" not in listed.stderr, listed.stderr[-1500:]
    assert "ops-1" in listed.stdout
    assert "junk" in listed.stdout and "invalid" in listed.stdout  # kept, shown as invalid
    store = RedisActionStore(redis_url)
    registry = ActionRegistry(None, store)
    registry.load_now()
    registry.stop()
    store.close()
    assert registry.current().match_ip(BLOCKED_IP, time.time()) is not None


# -- a locked store never stalls start-up ------------------------------------------------------------


def test_a_write_locked_action_store_does_not_stall_configure(tmp_path: Path) -> None:
    """SqliteActionStore._db() ran the schema script (writes) on every new connection, with 20
    attempts of a 2 s busy timeout: while anyone held the write lock (an operator's sqlite3
    shell, a stuck writer), configure() -- so each worker's boot -- hung ~44 s, and each later
    refresh as long. Readers never write now: the store is read, the block applies."""
    store = tmp_path / "actions.db"
    _opened(SqliteActionStore(str(store))).put(
        block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None)
    )
    lock = _opened(sqlite3.connect(store, isolation_level=None))
    lock.execute("BEGIN IMMEDIATE")
    lock.execute("UPDATE meta SET value = value")
    try:
        done = run_script(
            f"""
            import time, sqreen_otel
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            trace.set_tracer_provider(TracerProvider())
            started = time.monotonic()
            sqreen_otel.configure()
            print("took", time.monotonic() - started)
            print("blocked", sqreen_otel.is_blocked(ip="{BLOCKED_IP}"))
            """,
            {"SQREEN_ACTIONS_STORE": str(store), "SQREEN_LOCAL_STORE": str(tmp_path / "events.db")},
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert done.returncode == 0, done.stderr[-2000:]
    took = float(done.stdout.split("took", 1)[1].split()[0])
    assert took < 5, f"configure() took {took:.1f} s"
    assert "blocked True" in done.stdout


def test_an_exclusively_locked_store_costs_a_refresh_a_moment_and_keeps_the_last_set(tmp_path: Path) -> None:
    """Not in WAL mode (a store copied or rebuilt by hand), an exclusive lock blocks readers too:
    they give up within their short budget and keep the last known set."""
    path = tmp_path / "actions.db"
    writer, store = _opened(SqliteActionStore(str(path))), _opened(SqliteActionStore(str(path)))
    writer.put(block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None))
    registry = ActionRegistry(None, store, refresh_s=60)
    registry.load_now()
    writer.close()
    store.close()  # leaving WAL mode needs every other connection closed
    lock = _opened(sqlite3.connect(path, isolation_level=None))
    lock.execute("PRAGMA journal_mode=DELETE")
    lock.execute("BEGIN EXCLUSIVE")
    lock.execute("UPDATE meta SET value = value + 1")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            _opened(SqliteActionStore(str(path))).version()
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        assert not registry.refresh()
        assert time.monotonic() - started < 1.5
    finally:
        lock.execute("ROLLBACK")
        lock.close()
        registry.stop()
    assert registry.current().match_ip(BLOCKED_IP, time.time()) is not None


def test_a_reader_never_writes_the_store(tmp_path: Path) -> None:
    path = tmp_path / "actions.db"
    reader = _opened(SqliteActionStore(str(path)))
    assert reader.version() == 0 and reader.list_actions() == []
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []  # no schema written
    _opened(SqliteActionStore(str(path))).put(
        block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None)
    )
    assert reader.version() != 0 and len(reader.list_actions()) == 1


# -- matching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "inside", "outside"),
    [
        (f"::ffff:{BLOCKED_IP}", BLOCKED_IP, "198.51.100.8"),
        ("::ffff:198.51.100.0/120", "198.51.100.200", "198.51.101.1"),
        ("::ffff:0:0/96", "192.0.2.1", "2001:db8::1"),
    ],
)
def test_an_ipv4_mapped_cidr_blocks_the_ipv4_client(cidr: str, inside: str, outside: str) -> None:
    """A dual-stack server logs IPv4 clients as ::ffff:a.b.c.d; an operator copies that into
    ``sqreen-otel actions block-ip ::ffff:198.51.100.7``: it was accepted, filed in the IPv6
    table, while ip_value() maps every client to IPv4: it never matched."""
    action = parse_action(block_ip("mapped", cidr), NOW)
    assert all(network.version == 4 for network in action.networks)
    index = ActionIndex([action], NOW)
    assert index.match_ip(inside, NOW) is not None
    assert index.match_ip(f"::ffff:{inside}" if "." in inside else inside, NOW) is not None
    assert index.match_ip(outside, NOW) is None
    ipv6 = parse_action(block_ip("v6", "::/0"), NOW)  # a wider IPv6 network stays IPv6
    assert ipv6.networks[0].version == 6


def test_an_expired_longer_prefix_does_not_hide_an_active_shorter_block() -> None:
    """The CIDR table returned only the most specific owner; match_ip then re-checked expiry and
    gave up, instead of falling back to the covering, still-active block (until the next
    rebuild: forever if the refresher is stuck or dead)."""
    permanent = parse_action(block_ip("perm", "10.0.0.0/8"), NOW)
    short = parse_action(block_ip("short", "10.1.2.3", created_at=NOW, duration=60), NOW)
    index = ActionIndex([permanent, short], NOW)  # built while both were active
    later = NOW + 61
    assert index.match_ip("10.1.2.4", later) is not None  # the /8 still blocks its neighbour...
    match = index.match_ip("10.1.2.3", later)
    assert match is not None and match.action.action_id == "perm"  # ...and must still block it
    assert index.match_ip("10.1.2.3", NOW).action.action_id == "short"  # type: ignore[union-attr]


def test_the_cidr_table_agrees_with_a_scan_when_actions_expire() -> None:
    """The longest active prefix, by brute force, on random nested CIDRs (duplicates included)
    with random expiries, looked up at random moments."""
    rng = random.Random(11)
    actions = []
    for position in range(2000):
        prefix = rng.choice([8, 12, 16, 20, 24, 28, 32])
        address = ipaddress.IPv4Address(rng.getrandbits(32) & (0xFFFFFFFF << (32 - prefix)) & 0x0F0FFFFF)
        duration = rng.choice([None, 10, 20, 30])
        raw = block_ip(f"a{position}", f"{address}/{prefix}", created_at=NOW, duration=duration)
        actions.append(parse_action(raw, NOW))
    index = ActionIndex(actions, NOW)
    for _ in range(3000):
        value = rng.getrandbits(32) & 0x0F0FFFFF
        now = NOW + rng.choice([0, 15, 25, 35])
        address = ipaddress.IPv4Address(value)
        covering = [a.networks[0].prefixlen for a in actions if address in a.networks[0] and a.active(now)]
        match = index.match_ip(str(address), now)
        if not covering:
            assert match is None
        else:
            assert match is not None and match.action.active(now)
            assert address in match.action.networks[0]
            assert match.action.networks[0].prefixlen == max(covering)


def _match_cost(index: ActionIndex, identifiers: dict[str, str]) -> float:
    """The best of three timings of 2000 matches (seconds)."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(2000):
            index.match_user(identifiers, NOW)
        timings.append(time.perf_counter() - started)
    return min(timings)


def test_user_matching_does_not_scan_every_user_that_shares_an_identifier() -> None:
    """Users were filed under min(user): with {"account": "acme", "user": ...} every user landed
    in the ("account", "acme") bucket and each identify() of any acme user scanned all of them."""
    ids = {"account": "acme", "user": "someone-else"}

    def one_action(count: int) -> ActionIndex:
        users = [{"account": "acme", "user": f"u{i}"} for i in range(count)]
        raw = {"action_id": "many", "action": "block_user", "parameters": {"users": users}}
        return ActionIndex([parse_action(raw, NOW)], NOW)

    def many_actions(count: int) -> ActionIndex:
        raws = [
            {
                "action_id": f"a{i}",
                "action": "block_user",
                "parameters": {"users": [{"account": "acme", "user": f"u{i}"}]},
            }
            for i in range(count)
        ]
        return ActionIndex([parse_action(raw, NOW) for raw in raws], NOW)

    for build, large_count in ((one_action, 10_000), (many_actions, 50_000)):
        small, large = build(10), build(large_count)
        assert large.match_user({"account": "acme", "user": "u7"}, NOW) is not None
        assert large.match_user({"account": "acme", "user": f"u{large_count}"}, NOW) is None
        small_cost, large_cost = _match_cost(small, ids), _match_cost(large, ids)
        assert large_cost < 20 * small_cost, (
            f"10 users: {small_cost / 2:.4f} ms/match, {large_count}: {large_cost / 2:.4f}"
        )


# -- passlist bypasses, end to end --------------------------------------------------------------------


def hostile_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SQREEN_LOCAL_STORE": str(tmp_path / "events.db"),
        "SQREEN_ACTIONS_STORE": str(tmp_path / "actions.db"),
        "SQREEN_EXPORTER": "none",
        **extra,
    }


def test_dot_segments_do_not_exempt_a_route_that_does_not_normalise_them(tmp_path: Path) -> None:
    """The passlist resolved '..' but Flask/werkzeug (and Django) route the raw PATH_INFO: a
    blocked IP asked for /api/transfer/../../health, the passlist saw /health, the catch-all
    /api/<path:sub> view ran."""
    env = hostile_env(tmp_path, SQREEN_TRUSTED_PROXIES="127.0.0.1/32", SQREEN_PATH_PASSLIST="/health")
    assert cli(env, "actions", "block-ip", BLOCKED_IP).returncode == 0
    with Gunicorn(APP, tmp_path, env, workers=1) as server:
        xff = {"X-Forwarded-For": BLOCKED_IP}
        assert request(server.port, "/api/transfer", xff)[0] == 403
        assert request(server.port, "/health", xff)[0] == 200  # the passlist works
        for path in ("/api/transfer/../../health", "/api/%2e%2e/health", "/api/%2E%2E/health", "//api/x"):
            status, _, body = request(server.port, path, xff)
            assert (status, body) != (200, b"api view ran"), path
            assert status == 403, path


def test_a_forged_forwarding_header_does_not_borrow_the_proxys_passlisted_ip(tmp_path: Path) -> None:
    """Trusted-proxy mode, the proxy (127.0.0.1) inside SQREEN_IP_PASSLIST (the internal network,
    the monitoring). A blocked client added 'X-Real-IP: <anything>' (or 'Forwarded: for=unknown'):
    the request was ambiguous, its address became the peer, the passlist covered the peer, and
    both the IP block and the user block were skipped."""
    env = hostile_env(tmp_path, SQREEN_TRUSTED_PROXIES="127.0.0.1/32", SQREEN_IP_PASSLIST="127.0.0.0/8")
    assert cli(env, "actions", "block-ip", BLOCKED_IP).returncode == 0
    assert cli(env, "actions", "block-user", "email=mallory").returncode == 0
    with Gunicorn(APP, tmp_path, env, workers=1) as server:
        xff = {"X-Forwarded-For": BLOCKED_IP}
        assert request(server.port, "/api/transfer", xff)[0] == 403
        forged = {**xff, "X-Real-IP": "203.0.113.1"}
        assert request(server.port, "/api/transfer", forged)[0] == 403
        assert request(server.port, "/api/transfer", {**xff, "Forwarded": "for=unknown"})[0] == 403
        user = {"X-Forwarded-For": "203.0.113.5"}
        assert request(server.port, "/login?user=mallory", user)[0] == 403
        assert request(server.port, "/login?user=mallory", {**user, "X-Real-IP": "203.0.113.6"})[0] == 403
        assert request(server.port, "/login?user=mallory", {**user, "Forwarded": "for=unknown"})[0] == 403
        # the passlist still exempts what it names: the proxy's own requests, and a request whose
        # disagreeing headers only ever name passlisted clients
        assert request(server.port, "/login?user=mallory")[0] == 200
        both_internal = {"X-Forwarded-For": "127.0.0.2", "X-Real-IP": "127.0.0.3"}
        assert request(server.port, "/login?user=mallory", both_internal)[0] == 200


@pytest.mark.parametrize(
    ("client", "exempt"),
    [
        (ClientIP("10.0.0.1", "x-forwarded-for", "127.0.0.1"), True),
        (ClientIP("198.51.100.7", "x-forwarded-for", "127.0.0.1"), False),
        (ClientIP("127.0.0.1", AMBIGUOUS, "127.0.0.1", ("10.0.0.1", "10.0.0.2")), True),
        (ClientIP("127.0.0.1", AMBIGUOUS, "127.0.0.1", ("10.0.0.1", "198.51.100.7")), False),
        (ClientIP("127.0.0.1", AMBIGUOUS, "127.0.0.1", ("198.51.100.7",)), False),
        (ClientIP(None, PEER, None), False),
    ],
)
def test_an_ambiguous_request_is_exempt_only_when_every_client_it_names_is(
    client: ClientIP, exempt: bool
) -> None:
    passlist = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
    current = ResponseSettings(enabled=True, ip_passlist=passlist, heuristic_ip=False)
    assert _ip_passlisted(client, current) is exempt


def test_without_trusted_proxies_a_forged_header_does_not_exempt_a_blocked_user(tmp_path: Path) -> None:
    """No SQREEN_TRUSTED_PROXIES, an office in SQREEN_IP_PASSLIST, only user actions (so not even
    the forgeable-IP warning was logged): a blocked user sent X-Forwarded-For: <office IP> and
    identify() no longer refused them. A user block rests on the app's authentication, not on a
    header: without trusted proxies the passlist is matched on the socket peer only."""
    env = hostile_env(tmp_path, SQREEN_IP_PASSLIST="192.0.2.0/24")
    assert cli(env, "actions", "block-user", "email=mallory").returncode == 0
    with Gunicorn(APP, tmp_path, env, workers=1) as server:
        assert request(server.port, "/login?user=mallory")[0] == 403
        assert request(server.port, "/login?user=mallory", {"X-Forwarded-For": "192.0.2.9"})[0] == 403
        assert request(server.port, "/login?user=ann", {"X-Forwarded-For": "192.0.2.9"})[0] == 200
    assert "SQREEN_IP_PASSLIST is matched on the socket peer address (REMOTE_ADDR) only" in server.output


@pytest.mark.parametrize(
    ("client", "exempt"),
    [
        (ClientIP("192.0.2.9", "x-forwarded-for", "203.0.113.1"), False),  # a header names the office
        (ClientIP("203.0.113.1", "x-forwarded-for", "192.0.2.9"), True),  # the office is the peer
        (ClientIP("192.0.2.9", PEER, "192.0.2.9"), True),
        (ClientIP(None, PEER, None), False),
    ],
)
def test_without_trusted_proxies_the_ip_passlist_is_matched_on_the_peer_only(
    client: ClientIP, exempt: bool
) -> None:
    current = ResponseSettings(enabled=True, ip_passlist=(ipaddress.ip_network("192.0.2.0/24"),))
    assert current.heuristic_ip
    assert _ip_passlisted(client, current) is exempt


# -- CLI exit status ------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_list_exits_non_zero_when_the_actions_file_is_invalid(tmp_path: Path, as_json: bool) -> None:
    bad = tmp_path / "actions.json"
    bad.write_text('{"actions": [')
    store = tmp_path / "actions.db"
    _opened(SqliteActionStore(str(store))).put(
        block_ip("good", BLOCKED_IP, created_at=time.time(), duration=None)
    )
    env = {
        "SQREEN_ACTIONS_FILE": str(bad),
        "SQREEN_ACTIONS_STORE": str(store),
        "SQREEN_LOCAL_STORE": str(tmp_path / "events.db"),
    }
    listed = cli(env, "actions", "list", *(["--json"] if as_json else []))
    assert "not valid JSON" in listed.stderr
    assert listed.returncode != 0
    assert "good" in listed.stdout  # the store's actions are still listed
