"""Client IP resolution: Sqreen's header order, and the trusted-proxy mode."""

from __future__ import annotations

import ipaddress

import pytest

from sqreen_otel._client_ip import parse_address, resolve_client_ip

PUBLIC = "203.0.114.7"  # global (203.0.113/24 is TEST-NET-3 and not global)
PUBLIC2 = "8.8.4.4"
PRIVATE = "10.1.2.3"
PROXY = "10.0.0.5"
TRUSTED = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8:1::/48"))


def environ(peer: str | None = PROXY, **headers: str) -> dict[str, str]:
    env = {"HTTP_" + name.upper(): value for name, value in headers.items()}
    if peer is not None:
        env["REMOTE_ADDR"] = peer
    return env


@pytest.mark.parametrize(
    ("env", "ip_header", "expected", "source"),
    [
        pytest.param(environ(), None, PROXY, "peer", id="no-headers-peer"),
        pytest.param(
            environ(x_forwarded_for=f"{PUBLIC}, {PROXY}"), None, PUBLIC, "x-forwarded-for", id="xff"
        ),
        pytest.param(
            environ(x_forwarded_for=f"{PRIVATE}, {PUBLIC}"),
            None,
            PUBLIC,
            "x-forwarded-for",
            id="first-global",
        ),
        pytest.param(
            environ(x_forwarded_for=f"127.0.0.1, {PRIVATE}"),
            None,
            PRIVATE,
            "x-forwarded-for",
            id="private-fallback",
        ),
        pytest.param(
            environ(peer=PUBLIC2, x_forwarded_for=PRIVATE),
            None,
            PUBLIC2,
            "peer",
            id="global-peer-beats-private",
        ),
        pytest.param(environ(x_forwarded_for="127.0.0.1"), None, PROXY, "peer", id="loopback-is-no-fallback"),
        pytest.param(
            environ(x_real_ip=PUBLIC, x_forwarded_for=PRIVATE),
            None,
            PUBLIC,
            "x-real-ip",
            id="later-header-global",
        ),
        pytest.param(
            environ(x_forwarded_for=f"{PUBLIC}:4711"), None, PUBLIC, "x-forwarded-for", id="ipv4-port"
        ),
        pytest.param(
            environ(x_forwarded_for="[2606:4700::1]:443"),
            None,
            "2606:4700::1",
            "x-forwarded-for",
            id="v6-port",
        ),
        pytest.param(
            environ(x_forwarded_for="2606:4700::1"), None, "2606:4700::1", "x-forwarded-for", id="bare-v6"
        ),
        pytest.param(
            environ(forwarded=f'for="[2606:4700::2]:80";proto=https, for={PUBLIC2}'),
            None,
            "2606:4700::2",
            "forwarded",
            id="rfc7239",
        ),
        pytest.param(
            environ(forwarded="for=unknown, for=_hidden"), None, PROXY, "peer", id="rfc7239-obfuscated"
        ),
        pytest.param(environ(via=f"1.1 {PUBLIC}, 1.0 fred"), None, PUBLIC, "via", id="via"),
        pytest.param(
            environ(x_forwarded_for="::ffff:8.8.8.8"), None, "8.8.8.8", "x-forwarded-for", id="v4-mapped"
        ),
        pytest.param(
            environ(x_forwarded_for="garbage, ;;, 999.1.1.1"), None, PROXY, "peer", id="garbage-skipped"
        ),
        pytest.param(
            environ(x_forwarded_for=PUBLIC, cf_connecting_ip=PUBLIC2),
            "cf-connecting-ip",
            PUBLIC2,
            "cf-connecting-ip",
            id="ip-header-first",
        ),
        pytest.param(environ(peer=None), None, None, "peer", id="no-peer"),
        pytest.param(
            environ(peer="unix:/tmp/sock"), None, "unix:/tmp/sock", "peer", id="non-ip-peer-kept-as-is"
        ),
    ],
)
def test_sqreen_mode(env: dict[str, str], ip_header: str | None, expected: str | None, source: str) -> None:
    result = resolve_client_ip(env, ip_header, ())
    assert (result.address, result.source) == (expected, source)


@pytest.mark.parametrize(
    ("env", "ip_header", "expected"),
    [
        pytest.param(
            environ(peer=PUBLIC2, x_forwarded_for=PUBLIC), None, PUBLIC2, id="untrusted-peer-ignores-headers"
        ),
        pytest.param(environ(x_forwarded_for=f"{PUBLIC}, 10.0.0.9"), None, PUBLIC, id="rightmost-untrusted"),
        pytest.param(
            environ(x_forwarded_for=f"6.6.6.6, {PUBLIC}"), None, PUBLIC, id="spoofed-left-entry-ignored"
        ),
        pytest.param(environ(x_forwarded_for=f"{PRIVATE}"), None, PRIVATE, id="private-client-kept"),
        pytest.param(
            environ(x_forwarded_for="10.0.0.8, 10.0.0.9"), None, "10.0.0.8", id="all-trusted-leftmost"
        ),
        pytest.param(environ(x_forwarded_for=f"{PUBLIC}, garbage"), None, PROXY, id="garbage-hop-stops"),
        pytest.param(environ(forwarded=f"for={PUBLIC};proto=http"), None, PUBLIC, id="rfc7239"),
        pytest.param(
            environ(x_real_ip=PUBLIC, x_forwarded_for=PUBLIC2),
            "x-real-ip",
            PUBLIC,
            id="configured-header-only",
        ),
        pytest.param(environ(x_client_ip=PUBLIC), None, PROXY, id="untrusted-header-kinds-ignored"),
        pytest.param(environ(peer="2001:db8:1::5", x_forwarded_for=PUBLIC), None, PUBLIC, id="v6-proxy"),
    ],
)
def test_trusted_proxy_mode(env: dict[str, str], ip_header: str | None, expected: str) -> None:
    assert resolve_client_ip(env, ip_header, TRUSTED).address == expected


def test_peer_is_always_reported_beside_the_client() -> None:
    result = resolve_client_ip(environ(x_forwarded_for=PUBLIC), None, ())
    assert result.peer == PROXY


def test_hostile_header_sizes_are_bounded() -> None:
    huge = ", ".join(["garbage"] * 100_000) + f", {PUBLIC}"
    assert resolve_client_ip(environ(x_forwarded_for=huge), None, ()).address == PROXY


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (' "1.2.3.4:80" ', "1.2.3.4"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
        ("[::1", None),
        ("", None),
    ],
)
def test_parse_address(token: str, expected: str | None) -> None:
    parsed = parse_address(token)
    assert (str(parsed) if parsed is not None else None) == expected
