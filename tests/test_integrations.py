"""Real Flask and Django apps and plain WSGI, through their real OpenTelemetry instrumentations."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any

import framework_apps
import pytest
from _instrumentations import needs
from _support import Otel, events_of, make_otel
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

import sqreen_otel
from sqreen_otel._http.request_context import request_context
from sqreen_otel.wsgi import SqreenMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

CLIENT_IP = "203.0.114.7"
HEADERS = {"X-Forwarded-For": f"{CLIENT_IP}, 10.0.0.2", "User-Agent": "pytest-agent/1.0"}
PEER = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000"}  # real servers set them; the test client does not
EXPECTED_EVENTS = framework_apps.EVENT_NAMES


@pytest.fixture(scope="session")
def harness() -> Iterator[tuple[Otel, dict[str, WSGIApplication]]]:
    otel = make_otel()
    apps = {
        "wsgi-sqreen-inside": framework_apps.plain_wsgi(otel.provider, sqreen_outside=False),
        "wsgi-sqreen-outside": framework_apps.plain_wsgi(otel.provider, sqreen_outside=True),
    }
    apps.update(framework_apps.instrumented_apps(otel.provider))
    yield otel, apps
    otel.provider.shutdown()


@pytest.fixture
def stack(harness: tuple[Otel, dict[str, WSGIApplication]]) -> tuple[Otel, dict[str, WSGIApplication]]:
    otel, apps = harness
    sqreen_otel.configure(tracer_provider=otel.provider, exporter=otel.ours, heartbeat_delay=3600)
    otel.app.clear()
    otel.ours.clear()
    return otel, apps


def server_span(spans: Iterable[ReadableSpan]) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is SpanKind.SERVER]
    return span


FRAMEWORKS = [
    "wsgi-sqreen-inside",
    "wsgi-sqreen-outside",
    pytest.param("flask", marks=needs("flask")),
    pytest.param("django", marks=needs("django")),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_events_on_the_request_span_with_default_properties(
    stack: tuple[Otel, dict[str, WSGIApplication]], framework: str
) -> None:
    otel, apps = stack
    response = Client(apps[framework]).post(
        "/login?user=ann&next=%2F", headers=HEADERS, buffered=True, environ_base=PEER
    )
    assert response.status_code == 200
    span = server_span(otel.app_spans())
    assert [name for name, _ in events_of(span)] == EXPECTED_EVENTS
    by_name = dict(events_of(span))
    assert by_name["report.exported"]["sqreen.properties.rows"] == 12
    assert by_name["rendered"]["sqreen.user.uid"] == "u-1"  # attributed to the user signup_track identified
    assert [e.name for s in otel.app_spans() if s.name == "render" for e in s.events] == []
    attributes = dict(span.attributes or {})
    assert attributes["client.address"] == CLIENT_IP
    assert attributes["network.peer.address"] == "127.0.0.1"
    assert attributes["sqreen.client_ip.source"] == "x-forwarded-for"
    assert attributes["user.id"] == "u-1"
    context = request_context(attributes)
    assert context.client_ip == CLIENT_IP
    assert context.user_agent == "pytest-agent/1.0"
    assert context.method == "POST"
    assert context.path == "/login"
    assert context.parameters == {"user": ["ann"], "next": ["/"]}
    (exported,) = otel.exported()
    assert events_of(exported) == events_of(span)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_app_exception_keeps_the_event(
    stack: tuple[Otel, dict[str, WSGIApplication]], framework: str
) -> None:
    otel, apps = stack
    if framework.startswith("wsgi"):
        with pytest.raises(ValueError, match="boom"):
            Client(apps[framework]).get("/boom", headers=HEADERS, buffered=True, environ_base=PEER)
    else:
        assert (
            Client(apps[framework])
            .get("/boom", headers=HEADERS, buffered=True, environ_base=PEER)
            .status_code
            == 500
        )
    span = server_span(otel.app_spans())
    assert [e.name for e in span.events if e.name != "exception"] == ["before.boom"]


def test_middleware_reraises_the_same_exception_object() -> None:
    error = KeyError("original")

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise error

    with pytest.raises(KeyError) as raised:
        Client(SqreenMiddleware(app)).get("/")
    assert raised.value is error


class ClosingBody:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    def close(self) -> None:
        self.closed = True


def test_response_iterable_is_returned_untouched_and_close_is_honoured() -> None:
    body = ClosingBody()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    seen: list[Any] = []

    def server(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result = SqreenMiddleware(app)(environ, start_response)
        seen.append(result)
        return result

    response = Client(server).get("/")
    assert response.get_data() == b"ab"
    response.close()
    assert seen == [body]
    assert body.closed


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_passes_werkzeug_lint(stack: tuple[Otel, dict[str, WSGIApplication]], framework: str) -> None:
    _, apps = stack
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        response = Client(LintMiddleware(apps[framework])).post("/login", headers=HEADERS, environ_base=PEER)
        assert response.status_code == 200
        response.close()


def test_never_double_wraps(stack: tuple[Otel, dict[str, WSGIApplication]]) -> None:
    otel, apps = stack
    inner = apps["wsgi-sqreen-inside"]
    assert SqreenMiddleware(SqreenMiddleware(inner)).app is inner
    # Nested around an OTel layer: the outer one binds the request, the inner one stands aside.
    nested = SqreenMiddleware(apps["wsgi-sqreen-outside"])
    Client(nested).post("/login", headers={"X-Forwarded-For": CLIENT_IP}, buffered=True, environ_base=PEER)
    span = server_span(otel.app_spans())
    assert dict(span.attributes or {})["client.address"] == CLIENT_IP
    assert len(span.events) == len(EXPECTED_EVENTS)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_blocked_user_is_answered_at_identify_and_the_request_span_ends(
    stack: tuple[Otel, dict[str, WSGIApplication]],
    framework: str,
    tmp_path: Any,
) -> None:
    """identify() raises RequestBlocked through each framework: the response is the block page
    (valid WSGI), nothing after identify runs, and the request span ends and is exported with
    the identify and enforcement events."""
    from sqreen_otel._responses.actions import parse_action
    from sqreen_otel._responses.sources import SqliteActionStore

    otel, apps = stack
    store = tmp_path / "actions.db"
    block = {
        "action_id": "mallory",
        "action": "block_user",
        "parameters": {"users": [{"email": "mallory@example.com"}]},
    }
    with closing(SqliteActionStore(str(store))) as actions:
        actions.put(parse_action(block, 0.0).to_json())
    sqreen_otel.configure(
        tracer_provider=otel.provider, exporter=otel.ours, heartbeat_delay=3600, actions_store=str(store)
    )
    client = Client(LintMiddleware(apps[framework]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        blocked = client.get(
            "/identify?user=mallory@example.com",
            buffered=True,
            headers={**HEADERS, "Accept": "application/json"},
            environ_base=PEER,
        )
        allowed = client.get(
            "/identify?user=ann@example.com", headers=HEADERS, environ_base=PEER, buffered=True
        )
    assert blocked.status_code == 403 and blocked.json == {
        "status": 403,
        "error": "Access denied",
        "message": "This request was blocked by a security rule.",
    }
    assert allowed.status_code == 200
    spans = [s for s in otel.exported() if s.kind is SpanKind.SERVER]
    names = [[name for name, _ in events_of(span)] for span in spans]
    assert ["sq.identify", "sq.action.block_user"] in names  # nothing after identify ran
    assert ["sq.identify", "after.identify"] in names
