"""End to end through a real WSGI server on 127.0.0.1 (werkzeug, threaded)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import framework_apps
import pytest
from _instrumentations import needs
from _support import Otel, events_of, make_otel
from opentelemetry.trace import SpanKind
from werkzeug.serving import BaseWSGIServer, make_server

pytestmark = needs("flask")

UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.fixture
def server() -> Iterator[tuple[Otel, BaseWSGIServer]]:
    otel = make_otel(trusted_proxies="127.0.0.0/8")
    app = framework_apps.flask_app(otel.provider)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield otel, httpd
    finally:
        httpd.shutdown()
        thread.join(10)
        otel.provider.shutdown()


def request(httpd: BaseWSGIServer, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=10)
    try:
        connection.request("POST", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_real_server_requests_carry_events_and_the_trusted_client_ip(
    server: tuple[Otel, BaseWSGIServer],
) -> None:
    otel, httpd = server
    clients = [f"198.51.{n}.10" for n in range(20)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda ip: request(
                    httpd,
                    f"/login?user={ip}",
                    # A client-forged left-most entry must not win: 127.0.0.0/8 is the trusted proxy.
                    {"X-Forwarded-For": f"6.6.6.6, {ip}", "User-Agent": "e2e"},
                ),
                clients,
            )
        )
    assert statuses == [200] * len(clients)
    exported = [span for span in otel.exported() if span.kind is SpanKind.SERVER]
    assert len(exported) == len(clients)
    seen = set()
    for span in exported:
        attributes = dict(span.attributes or {})
        assert attributes["network.peer.address"] == "127.0.0.1"
        seen.add(attributes["client.address"])
        assert [name for name, _ in events_of(span)] == framework_apps.EVENT_NAMES
    assert seen == set(clients)


def test_real_server_unsampled_request_is_exported_by_our_pipeline_only(
    server: tuple[Otel, BaseWSGIServer],
) -> None:
    otel, httpd = server
    assert (
        request(httpd, "/login", {"traceparent": UNSAMPLED_PARENT, "X-Forwarded-For": "198.51.100.9"}) == 200
    )
    assert otel.app_spans() == ()
    (span,) = otel.exported()  # one carrier for the request, started by its first event
    assert span.name == "sqreen.events" and not span.context.trace_flags.sampled
    assert [name for name, _ in events_of(span)] == framework_apps.EVENT_NAMES
    attributes = dict(span.attributes or {})
    assert attributes["client.address"] == "198.51.100.9"  # resolved from the environ, trusted proxy
    assert attributes["http.request.method"] == "POST" and attributes["url.path"] == "/login"
