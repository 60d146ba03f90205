"""``make demo``: the example shop on a real WSGI server on 127.0.0.1, realistic traffic, then
the security events sqreen-otel recorded, one line each.

The app's own traces go nowhere here (a null exporter stands in for the usual OTLP one), so
what is printed is exactly what sqreen-otel's pipeline shipped.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import urllib.parse
from collections.abc import Sequence

from flask_app import create_app, setup_tracing  # examples/ is on sys.path: it is the script's folder
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sqreen_otel.exporters import ConsoleEventExporter
from werkzeug.serving import WSGIRequestHandler, make_server

import sqreen_otel


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: the demo prints the security events instead."""


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def post(
    port: int, path: str, client_ip: str, form: dict[str, str] | None = None, body: object = None
) -> int:
    headers = {"X-Forwarded-For": client_ip, "User-Agent": "demo-traffic/1.0"}
    if form is not None:
        payload = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    else:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def main() -> None:
    provider = setup_tracing(NullExporter(), exporter=ConsoleEventExporter(sys.stdout))
    server = make_server("127.0.0.1", 0, create_app(), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_port
    print(f"demo shop listening on http://127.0.0.1:{port}; sending traffic...\n")
    try:
        post(port, "/signup", "203.0.113.10", {"email": "ann@example.com", "password": "correct horse"})
        post(port, "/signup", "198.51.100.7", {"email": "bob@example.com", "password": "battery staple"})
        for attempt in range(5):  # a credential-stuffing burst from one address
            post(port, "/login", "192.0.2.66", {"email": f"user{attempt}@example.com", "password": "123456"})
        post(port, "/login", "203.0.113.10", {"email": "ann@example.com", "password": "correct horse"})
        post(
            port,
            "/purchase",
            "203.0.113.10",
            body={"email": "ann@example.com", "item": "book", "amount": 12.5},
        )
        post(port, "/password-reset", "198.51.100.7", {"email": "bob@example.com"})
    finally:
        server.shutdown()
        thread.join()
    print("security events recorded by sqreen-otel:\n")
    sqreen_otel.flush()
    provider.shutdown()
    print(f"\nstats: {sqreen_otel.stats()}")


if __name__ == "__main__":
    main()
