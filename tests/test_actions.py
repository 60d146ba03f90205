"""Security actions: the model's validation, the index (longest prefix, block before redirect,
user subsets, expiry), the sources (file reload, a malformed file, the SQLite store), the
block pages and the operator's CLI."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import random
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import sqreen_otel
from sqreen_otel._cli.events import main as cli
from sqreen_otel._responses.actions import ActionError, parse_action, parse_actions
from sqreen_otel._responses.index import ActionIndex, CidrTable, Match, ip_value
from sqreen_otel._responses.pages import BlockPages, block_response, prefers_json, redirect_response
from sqreen_otel._responses.passlists import covers, normalized_path, path_passlisted
from sqreen_otel._responses.registry import ActionRegistry
from sqreen_otel._responses.sources import ActionsFile, SqliteActionStore

NOW = 1_800_000_000.0


def action(kind: str = "block_ip", **parameters: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "action_id": f"a-{random.getrandbits(32):x}",
        "action": kind,
        "parameters": parameters,
    }
    return raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("block", "JSON object"),
        ({"action": "block_ip", "parameters": {"ip_cidr": ["1.2.3.4"]}}, "action_id"),
        ({"action_id": "a b", "action": "block_ip", "parameters": {"ip_cidr": ["1.2.3.4"]}}, "action_id"),
        ({"action_id": "a", "action": "ban_ip", "parameters": {}}, "action must be one of"),
        ({"action_id": "a", "action": "block_ip", "parameters": {"ip_cidr": []}}, "ip_cidr"),
        ({"action_id": "a", "action": "block_ip", "parameters": {"ip_cidr": ["1.2.3.4/33"]}}, "ip_cidr"),
        (
            {"action_id": "a", "action": "block_ip", "duration": -1, "parameters": {"ip_cidr": ["::1"]}},
            "duration",
        ),
        (
            {"action_id": "a", "action": "block_ip", "duration": "1h", "parameters": {"ip_cidr": ["::1"]}},
            "duration",
        ),
        (
            {
                "action_id": "a",
                "action": "block_ip",
                "duration": float("nan"),
                "parameters": {"ip_cidr": ["::1"]},
            },
            "duration",
        ),
        ({"action_id": "a", "action": "block_user", "parameters": {"users": [{}]}}, "map of 1 to"),
        (
            {"action_id": "a", "action": "block_user", "parameters": {"users": [{"id": [1]}]}},
            "identifier values",
        ),
        (
            {
                "action_id": "a",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["::1"], "url": "javascript:alert(1)"},
            },
            "http",
        ),
        (
            {
                "action_id": "a",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["::1"], "url": "/relative"},
            },
            "http",
        ),
        (
            {
                "action_id": "a",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["::1"], "url": "https://u:p@x.example/"},
            },
            "credentials",
        ),
        (
            {
                "action_id": "a",
                "action": "redirect_ip",
                "parameters": {"ip_cidr": ["::1"], "url": "https://x.example/\r\nSet-Cookie: a=b"},
            },
            "control",
        ),
    ],
)
def test_invalid_actions_are_rejected_with_a_reason(raw: object, reason: str) -> None:
    with pytest.raises(ActionError, match=reason):
        parse_action(raw, NOW)


def test_one_bad_action_never_stops_the_others() -> None:
    good = action(ip_cidr=["192.0.2.0/24"])
    actions, rejected = parse_actions([good, {"action_id": "bad", "action": "nope"}, dict(good)], {}, NOW)
    assert [a.action_id for a in actions] == [good["action_id"]]
    assert [reason for _, reason in rejected] == [
        "action must be one of block_ip, block_user, redirect_ip, redirect_user",
        "duplicate action_id (the first one is kept)",
    ]


def kind(match: Match | None) -> str | None:
    return None if match is None else match.action.kind


def action_id(match: Match | None) -> str | None:
    return None if match is None else match.action.action_id


def index_of(*raws: dict[str, Any], now: float = NOW) -> ActionIndex:
    actions, rejected = parse_actions(raws, {}, now)
    assert not rejected
    return ActionIndex(actions, now)


def test_longest_prefix_wins_within_a_kind_and_block_beats_redirect() -> None:
    wide = action(ip_cidr=["10.0.0.0/8"])
    narrow = action(ip_cidr=["10.1.0.0/16"])
    redirect = action("redirect_ip", ip_cidr=["10.1.2.3/32", "2001:db8::/32"], url="https://x.example/why")
    index = index_of(wide, narrow, redirect)
    assert action_id(index.match_ip("10.1.2.3", NOW)) == narrow["action_id"]
    assert action_id(index.match_ip("10.9.9.9", NOW)) == wide["action_id"]
    assert kind(index.match_ip("2001:db8::1", NOW)) == "redirect_ip"
    assert action_id(index.match_ip("::ffff:10.1.2.3", NOW)) == narrow["action_id"]
    assert index.match_ip("11.0.0.1", NOW) is None
    assert index.match_ip("not an ip", NOW) is None


def test_the_cidr_table_agrees_with_ipaddress_on_random_nested_cidrs() -> None:
    rng = random.Random(7)
    networks = []
    for _ in range(3000):
        prefix = rng.choice([8, 12, 16, 20, 24, 28, 32])
        address = ipaddress.IPv4Address(rng.getrandbits(32) & (0xFFFFFFFF << (32 - prefix)) & 0x0FFFFFFF)
        networks.append(ipaddress.IPv4Network((address, prefix)))
    owners = [parse_action(action(ip_cidr=[str(network)]), NOW) for network in networks]
    table = CidrTable(zip(networks, owners, strict=True))
    for _ in range(3000):
        value = rng.getrandbits(32) & 0x0FFFFFFF
        address = ipaddress.IPv4Address(value)
        covering = [(n.prefixlen, i) for i, n in enumerate(networks) if address in n]
        found = table.lookup(value)
        if not covering:
            assert found is None
        else:
            best = max(prefix for prefix, _ in covering)
            assert found is not None and found.networks[0].prefixlen == best


def test_users_match_on_a_subset_of_identifiers_compared_as_text() -> None:
    block = action("block_user", users=[{"id": 42}])
    redirect = action(
        "redirect_user", users=[{"email": "ann@example.com", "org": "x"}], url="https://x.example/"
    )
    index = index_of(block, redirect)
    assert kind(index.match_user({"id": "42", "email": "z@example.com"}, NOW)) == "block_user"
    assert index.match_user({"email": "ann@example.com"}, NOW) is None  # missing org
    assert kind(index.match_user({"email": "ann@example.com", "org": "x", "id": 7}, NOW)) == "redirect_user"
    assert index.match_user({"id": 43}, NOW) is None


def test_a_pseudonymised_user_matches_by_its_pseudonym() -> None:
    from sqreen_otel._scrubbing.pseudonym import pseudonym

    key = b"k" * 32
    index = index_of(action("block_user", users=[{"email": pseudonym(key, "ann@example.com")}]))
    assert index.match_user({"email": "ann@example.com"}, NOW, key) is not None
    assert index.match_user({"email": "ann@example.com"}, NOW) is None


def test_actions_expire_on_time() -> None:
    timed = action(ip_cidr=["192.0.2.1"])
    timed.update(duration=60, created_at=NOW)
    index = index_of(timed, action(ip_cidr=["198.51.100.1"]))
    assert index.valid_until == NOW + 60
    assert index.match_ip("192.0.2.1", NOW + 59) is not None
    assert index.match_ip("192.0.2.1", NOW + 60) is None  # checked at match time too
    assert len(ActionIndex(index.actions, NOW + 61).actions) == 1


def test_ip_values() -> None:
    assert ip_value("192.0.2.1") == (4, 0xC0000201)
    assert ip_value("::ffff:192.0.2.1") == (4, 0xC0000201)
    assert ip_value("fe80::1%eth0") == (6, 0xFE80 << 112 | 1)
    assert ip_value("1") is None and ip_value("") is None


@pytest.mark.parametrize(
    ("path", "covered"),
    [
        ("/health", True),
        ("/health/db", True),
        ("/healthz", False),
        ("/health/../login", False),
        ("/health/", True),
        ("/health/db/", True),
        # routed as written, not as resolved (werkzeug and Django route the raw PATH_INFO): a
        # dot or empty segment is never exempt, whatever it resolves to
        ("//health", False),
        ("/health//db", False),
        ("/health/./db", False),
        ("/api/transfer/../../health", False),
        ("/api/%2e%2e/health", False),
        ("/api/%2E./health", False),
        ("/health/..%2f", False),
        ("/health/%252e%252e/db", False),
    ],
)
def test_path_passlist_is_normalised_and_on_segment_boundaries(path: str, covered: bool) -> None:
    assert path_passlisted({"PATH_INFO": path, "SCRIPT_NAME": ""}, ("/health",)) is covered


def test_ip_passlist_covers_mapped_addresses() -> None:
    networks = (ipaddress.ip_network("192.0.2.0/24"),)
    assert covers(networks, "::ffff:192.0.2.9") and not covers(networks, "192.0.3.1")
    assert normalized_path("/a/./b/../c") == "/a/c"


@pytest.mark.parametrize(
    ("accept", "json_"),
    [
        ("application/json", True),
        ("*/*", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/json;q=0.5, text/html;q=0.9", False),
        ("text/html;q=0.5, application/json", True),
        ("application/problem+json", True),
        ("application/json;q=0", False),
        (None, False),
    ],
)
def test_block_page_negotiation(accept: str | None, json_: bool) -> None:
    assert prefers_json(accept) is json_


def test_pages_reflect_nothing_and_pass_werkzeug_lint() -> None:
    from werkzeug.middleware.lint import LintMiddleware
    from werkzeug.test import Client

    def app(environ: Any, start_response: Any) -> Any:
        if environ["PATH_INFO"].startswith("/r"):
            return redirect_response("https://example.com/why?a=1&b=2", environ, start_response)
        return block_response(BlockPages(), environ, start_response)

    client = Client(LintMiddleware(app))
    evil = "/<script>alert(1)</script>"
    html = client.get(evil, headers={"Accept": "text/html", "X-Forwarded-For": "<b>x</b>"})
    assert html.status_code == 403 and b"<script>" not in html.data and b"<b>" not in html.data
    assert html.headers["Cache-Control"] == "no-store"
    as_json = client.get(evil, headers={"Accept": "application/json"})
    assert as_json.status_code == 403 and json.loads(as_json.data)["status"] == 403
    redirect = client.get("/r")
    assert redirect.status_code == 303 and redirect.headers["Location"] == "https://example.com/why?a=1&b=2"
    assert client.head("/x").data == b""


def test_registry_reloads_a_changed_file_and_keeps_the_last_good_set(
    tmp_path: Path, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "actions.json"
    first = action(ip_cidr=["192.0.2.1"])
    path.write_text(json.dumps({"actions": [first, {"action_id": "broken", "action": "block_ip"}]}))
    clock = [NOW]
    registry = ActionRegistry(ActionsFile(str(path)), None, clock=lambda: clock[0])
    registry.load_now()
    assert [a.action_id for a in registry.actions()] == [first["action_id"]]
    assert any("rejected action broken" in r.getMessage() for r in sqreen_logs.records)
    second = action(
        ip_cidr=["192.0.2.2"],
    )
    second.update(duration=30)
    path.write_text(json.dumps({"actions": [first, second]}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1000))
    assert registry.refresh()
    assert len(registry.actions()) == 2
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2000))
    assert not registry.refresh()  # the last good set stays
    assert len(registry.actions()) == 2
    assert any("is not valid JSON (line 1)" in r.getMessage() for r in sqreen_logs.records)
    assert sqreen_otel.stats()["actions_file_invalid"] == 1
    clock[0] = NOW + 31  # the 30 s action (its duration runs from when it was first seen)
    assert registry.refresh()
    assert [a.action_id for a in registry.actions()] == [first["action_id"]]


def test_the_sqlite_store_is_shared_and_versioned(tmp_path: Path) -> None:
    store = SqliteActionStore(str(tmp_path / "actions.db"))
    other = SqliteActionStore(str(tmp_path / "actions.db"))  # another process's view
    with closing(store), closing(other):
        before = other.version()
        blocked = parse_action(
            {**action(ip_cidr=["192.0.2.1"]), "created_at": time.time(), "duration": 60}, NOW
        )
        store.put(blocked.to_json())
        assert other.version() != before
        assert other.list_actions() == [blocked.to_json()]
        assert other.remove(blocked.action_id) and not other.remove(blocked.action_id)
        assert store.list_actions() == []


def test_an_unreadable_store_keeps_the_last_known_set(
    tmp_path: Path, sqreen_logs: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "actions.db"
    store = SqliteActionStore(str(path))
    store.put(parse_action({**action(ip_cidr=["192.0.2.1"]), "created_at": time.time()}, NOW).to_json())
    registry = ActionRegistry(None, store)
    registry.load_now()
    assert len(registry.actions()) == 1
    store.close()
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    path.write_bytes(b"this is not a database" * 100)  # corrupted, or a disk gone wrong
    assert not registry.refresh()
    assert len(registry.actions()) == 1
    assert sqreen_otel.stats()["action_store_unavailable"] >= 1
    assert any("cannot be read" in r.getMessage() for r in sqreen_logs.records)


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli(list(argv), out=out)
    return code, out.getvalue()


def test_the_cli_adds_lists_and_removes_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQREEN_ACTIONS_STORE", str(tmp_path / "actions.db"))
    sqreen_otel.configure()
    code, out = run_cli(
        "actions", "block-ip", "192.0.2.0/24", "2001:db8::1", "--duration", "15m", "--id", "by-hand"
    )
    assert code == 0 and out.startswith("added by-hand: block_ip until ")
    code, out = run_cli(
        "actions", "redirect-user", "email=ann@example.com", "--url", "https://example.com/help"
    )
    assert code == 0
    code, out = run_cli("actions", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {row["action"] for row in rows} == {"block_ip", "redirect_user"}
    assert (
        next(row for row in rows if row["action_id"] == "by-hand")["target"]
        == "192.0.2.0/24, 2001:db8::1/128"
    )
    assert run_cli("actions", "remove", "by-hand")[0] == 0
    assert run_cli("actions", "remove", "by-hand")[0] == 1
    assert run_cli("actions", "redirect-ip", "192.0.2.1", "--url", "javascript:alert(1)")[0] == 1


def test_the_cli_refuses_bad_durations_and_identifiers(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["actions", "block-ip", "1.2.3.4", "--duration", "soon"], ["actions", "block-user", "ann"]):
        with pytest.raises(SystemExit) as exit_info:
            cli(argv)
        assert exit_info.value.code == 2
    assert "not a duration" in capsys.readouterr().err
