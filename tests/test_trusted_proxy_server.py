"""Trusted-proxy mode through a real server (gunicorn + Flask): the attacks of the review.

127.0.0.1 (the test client) plays the trusted proxy: what it sends is what a proxy forwards,
the client's own header with the address the proxy saw appended at the right end.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from _instrumentations import needs
from _servers import Gunicorn

pytestmark = needs("flask")  # flask_server_app, as documented

CLIENT = "203.0.114.7"
BY_COUNT = ", ".join(f"7.7.{n // 250}.{n % 250}" for n in range(300))  # ~3.6 KB, 300 elements
BY_SIZE = "6.6.6.6, " + "x" * 7000  # inside gunicorn's 8190-byte header limit


def client_ips(store: Path) -> dict[str, str]:
    with closing(sqlite3.connect(store)) as db:
        rows = db.execute(
            "SELECT json_extract(properties, '$.id'), client_ip FROM events WHERE name = 'request.tagged'"
        )
        return dict(rows.fetchall())


def serve(tmp_path: Path, requests: dict[str, dict[str, str]], **settings: str) -> dict[str, str]:
    store = tmp_path / "events.db"
    env = {"SQREEN_LOCAL_STORE": str(store), "SQREEN_HEARTBEAT_DELAY": "3600", **settings}
    with Gunicorn("flask_server_app:app", tmp_path, env) as server:
        for request_id, headers in requests.items():
            status, _, _ = server.get(f"/login?id={request_id}", headers)
            assert status == 200, request_id
    assert server.process is not None and server.process.returncode == 0, server.output
    return client_ips(store)


def test_padding_cannot_push_the_proxy_hop_out_and_conflicting_headers_never_win(tmp_path: Path) -> None:
    seen = serve(
        tmp_path,
        {
            "by-count": {"X-Forwarded-For": f"{BY_COUNT}, {CLIENT}"},
            "by-size": {"X-Forwarded-For": f"{BY_SIZE}, {CLIENT}"},
            "plain": {"X-Forwarded-For": f"6.6.6.6, {CLIENT}"},
            "forged-xff-beside-forwarded": {"X-Forwarded-For": "6.6.6.6", "Forwarded": f"for={CLIENT}"},
            "forged-forwarded-beside-xff": {"X-Forwarded-For": CLIENT, "Forwarded": "for=6.6.6.6"},
            "no-header": {},
        },
        SQREEN_TRUSTED_PROXIES="127.0.0.1/32",
    )
    assert seen == {
        "by-count": CLIENT,
        "by-size": CLIENT,
        "plain": CLIENT,
        "forged-xff-beside-forwarded": "127.0.0.1",  # ambiguous: the proxy, never the forged value
        "forged-forwarded-beside-xff": "127.0.0.1",
        "no-header": "127.0.0.1",
    }


def test_the_named_header_is_the_only_one_read(tmp_path: Path) -> None:
    seen = serve(
        tmp_path,
        {"named": {"X-Forwarded-For": "6.6.6.6", "Forwarded": f'for="{CLIENT}";proto=http'}},
        SQREEN_TRUSTED_PROXIES="127.0.0.1/32",
        SQREEN_IP_HEADER="Forwarded",
    )
    assert seen == {"named": CLIENT}


def test_an_invalid_trusted_proxy_setting_fails_closed(tmp_path: Path) -> None:
    seen = serve(
        tmp_path,
        {"forged": {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"}},
        SQREEN_TRUSTED_PROXIES="127.0.0.1/33",
    )
    assert seen == {"forged": "127.0.0.1"}  # not the forgeable Sqreen mode's 6.6.6.6
