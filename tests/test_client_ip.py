"""Client IP resolution: Sqreen's header order, and the trusted-proxy mode."""

from __future__ import annotations

import ipaddress

import pytest

from sqreen_otel._http.client_ip import (
    MAX_ELEMENTS,
    MAX_HEADER_CHARS,
    ClientIPPolicy,
    parse_address,
    resolve_client_ip,
)

PUBLIC = "203.0.114.7"  # global (203.0.113/24 is TEST-NET-3 and not global)
PUBLIC2 = "8.8.4.4"
PRIVATE = "10.1.2.3"
PROXY = "10.0.0.5"
TRUSTED = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8:1::/48"))
SQREEN_MODE = ClientIPPolicy()


def trusted(ip_header: str | None = None) -> ClientIPPolicy:
    return ClientIPPolicy(ip_header, TRUSTED)


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
    result = resolve_client_ip(env, ClientIPPolicy(ip_header))
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
        pytest.param(environ(x_real_ip=PUBLIC), None, PUBLIC, id="x-real-ip-alone"),
        pytest.param(
            environ(x_real_ip=PUBLIC, x_forwarded_for=f"6.6.6.6, {PUBLIC}"), None, PUBLIC, id="headers-agree"
        ),
        pytest.param(
            environ(x_forwarded_for=f"6.6.6.6, {PUBLIC}"), "x-forwarded-for", PUBLIC, id="named-xff"
        ),
        pytest.param(
            environ(forwarded=f"for={PUBLIC}", x_forwarded_for="6.6.6.6"), "forwarded", PUBLIC, id="named-fwd"
        ),
        pytest.param(environ(peer="2001:db8:1::5", x_forwarded_for=PUBLIC), None, PUBLIC, id="v6-proxy"),
    ],
)
def test_trusted_proxy_mode(env: dict[str, str], ip_header: str | None, expected: str) -> None:
    assert resolve_client_ip(env, trusted(ip_header)).address == expected


def test_peer_is_always_reported_beside_the_client() -> None:
    result = resolve_client_ip(environ(x_forwarded_for=PUBLIC), SQREEN_MODE)
    assert result.peer == PROXY


def test_hostile_header_sizes_are_bounded() -> None:
    huge = ", ".join(["garbage"] * 100_000) + f", {PUBLIC}"
    assert resolve_client_ip(environ(x_forwarded_for=huge), SQREEN_MODE).address == PROXY


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


# The proxy appends the address it saw at the right end; everything to its left is the client's.
PADDINGS = {
    "by-count": ", ".join(f"7.7.{n // 250}.{n % 250}" for n in range(200)),
    "by-size": "6.6.6.6, " + "x" * (MAX_HEADER_CHARS + 100),
    "just-over-count": ", ".join(["6.6.6.6"] * (MAX_ELEMENTS + 1)),
    "trusted-looking": ", ".join(["10.0.0.9"] * (MAX_ELEMENTS * 2)),
}


@pytest.mark.parametrize("padding", PADDINGS.values(), ids=PADDINGS.keys())
def test_trusted_mode_cannot_be_forged_by_padding_the_header(padding: str) -> None:
    env = environ(x_forwarded_for=f"{padding}, {PUBLIC}")
    assert len(env["HTTP_X_FORWARDED_FOR"]) > 580
    result = resolve_client_ip(env, trusted())
    assert (result.address, result.source) == (PUBLIC, "x-forwarded-for")


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"x_forwarded_for": "6.6.6.6", "forwarded": f"for={PUBLIC}"}, "forwarded"),
        ({"x_forwarded_for": "6.6.6.6", "x_real_ip": PUBLIC}, "x-real-ip"),
        ({"x_forwarded_for": f"9.9.9.9, {PUBLIC}", "forwarded": "for=6.6.6.6"}, "x-forwarded-for"),
    ],
)
def test_a_client_sent_header_next_to_the_proxys_is_never_believed(
    headers: dict[str, str], named: str
) -> None:
    """Without SQREEN_IP_HEADER, conflicting headers are ambiguous: the proxy's address, never
    the client's choice; naming the header the proxy writes resolves it."""
    env = environ(**headers)
    ambiguous = resolve_client_ip(env, trusted())
    assert (ambiguous.address, ambiguous.source) == (PROXY, "ambiguous")
    assert PUBLIC in ambiguous.candidates  # enforcement can still consider the real client
    assert resolve_client_ip(env, trusted(named)).address == PUBLIC


@pytest.mark.parametrize(
    "headers",
    [
        {"forwarded": "for=unknown", "x_forwarded_for": "6.6.6.6"},
        {"forwarded": "for=_hidden", "x_forwarded_for": "6.6.6.6"},
        {"x_forwarded_for": "unix:", "forwarded": "for=6.6.6.6"},
        {"x_real_ip": "garbage", "x_forwarded_for": "6.6.6.6"},
    ],
)
def test_a_header_naming_an_unknown_client_disagrees_with_one_naming_an_address(
    headers: dict[str, str],
) -> None:
    """The proxy may write ``for=unknown`` (RFC 7239): a client's own header must not win then."""
    result = resolve_client_ip(environ(**headers), trusted())
    assert (result.address, result.source) == (PROXY, "ambiguous")


def test_peer_only_policy_believes_no_header() -> None:
    env = environ(peer=PUBLIC2, x_forwarded_for=PUBLIC, x_real_ip=PUBLIC)
    assert resolve_client_ip(env, ClientIPPolicy(None, ())).address == PUBLIC2
    assert resolve_client_ip(environ(x_forwarded_for=PUBLIC), ClientIPPolicy(None, ())).address == PROXY
