"""Default properties from HTTP attributes, whatever the semconv mode produced."""

from __future__ import annotations

from sqreen_otel._http.request_context import parse_parameters, request_context

OLD = {
    "http.method": "POST",
    "http.target": "/login?user=ann&next=%2Fhome&next=x",
    "http.user_agent": "curl/8",
    "net.peer.ip": "10.0.0.1",
}
NEW = {
    "http.request.method": "POST",
    "url.path": "/login",
    "url.query": "user=ann&next=%2Fhome&next=x",
    "user_agent.original": "curl/8",
    "client.address": "10.0.0.1",
}


def test_old_new_and_dup_modes_give_the_same_context() -> None:
    expected = request_context(NEW)
    assert request_context(OLD) == expected
    assert request_context({**OLD, **NEW}) == expected
    assert expected.parameters == {"user": ["ann"], "next": ["/home", "x"]}
    assert expected.method == "POST"
    assert expected.path == "/login"


def test_stable_keys_win_and_other_method_uses_the_original() -> None:
    context = request_context(
        {
            "client.address": "1.1.1.1",
            "net.peer.ip": "2.2.2.2",
            "http.request.method": "_OTHER",
            "http.request.method_original": "PURGE",
        }
    )
    assert context.client_ip == "1.1.1.1"
    assert context.method == "PURGE"


def test_full_url_fallback() -> None:
    context = request_context({"http.url": "https://h.example/a/b?x=1"})
    assert (context.path, context.parameters) == ("/a/b", {"x": ["1"]})


def test_parameters_are_bounded() -> None:
    assert len(parse_parameters("&".join(f"k{i}=v" for i in range(10_000)))) == 64
    assert parse_parameters("") == {}
