"""``make demo``: the example shop end to end on the embedded default (the local store).

1. serves the example shop on a real WSGI server on 127.0.0.1;
2. sends realistic traffic: signups, a burst of login failures with passwords in the query
   string, a login, purchases with card numbers in their properties, a password reset;
3. flushes sqreen-otel's pipeline (scrubbing happens there) into the local SQLite store;
4. shows the stored events with ``sqreen-otel events``, then which IPs failed to log in;
5. says how to open them in the web Event Explorer (``make ui``).

The store is ``$SQREEN_DEMO_STORE`` (``make demo``: ``.demo/events.db``, replaced at each run), or
a new temporary folder.

The app's own traces go nowhere here (a null exporter stands in for the usual OTLP one).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from flask_app import create_app, setup_tracing  # examples/ is on sys.path: it is the script's folder
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from werkzeug.serving import WSGIRequestHandler, make_server

import sqreen_otel


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: the demo shows the security events instead."""


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def post(
    port: int, target: str, client_ip: str, form: dict[str, str] | None = None, body: object = None
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
        connection.request("POST", target, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def send_traffic(port: int) -> None:
    post(port, "/signup", "203.0.113.10", {"email": "ann@example.com", "password": "correct horse"})
    post(port, "/signup", "198.51.100.7", {"email": "bob@example.com", "password": "battery staple"})
    for attempt in range(6):  # credential stuffing, with passwords in the query string
        query = urllib.parse.urlencode(
            {"email": f"user{attempt}@example.com", "password": f"123456-{attempt}"}
        )
        post(port, f"/login?{query}", "192.0.2.66", {})
    post(
        port,
        "/login?" + urllib.parse.urlencode({"email": "bob@example.com", "password": "guess"}),
        "198.51.100.7",
        {},
    )
    post(port, "/login", "203.0.113.10", {"email": "ann@example.com", "password": "correct horse"})
    for item, note in (
        ("book", "paid with card 4111 1111 1111 1111"),
        ("pen", "gift, card 5500-0000-0000-0004"),
    ):
        post(
            port,
            "/purchase",
            "203.0.113.10",
            body={"email": "ann@example.com", "item": item, "amount": 12.5, "note": note},
        )
    post(port, "/password-reset", "198.51.100.7", {"email": "bob@example.com"})


def explorer(store: str, *arguments: str) -> None:
    command = [str(Path(sys.executable).with_name("sqreen-otel")), "events", "--store", store, *arguments]
    print("$ sqreen-otel events " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True)
    print(flush=True)


def main() -> None:
    store = os.environ.get("SQREEN_DEMO_STORE") or os.path.join(
        tempfile.mkdtemp(prefix="sqreen-demo-"), "events.db"
    )
    os.makedirs(os.path.dirname(store), exist_ok=True)
    actions = os.path.join(os.path.dirname(store), "actions.db")  # the default, beside the store
    for stale in (store, actions):  # each run starts afresh: no events, no blocks from before
        for path in (stale, stale + "-wal", stale + "-shm"):
            if os.path.exists(path):
                os.remove(path)
    provider = setup_tracing(NullExporter(), exporter="local", local_store=store)
    server = make_server("127.0.0.1", 0, create_app(), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"demo shop on http://127.0.0.1:{server.server_port}, events stored in {store}\n", flush=True)
    try:
        send_traffic(server.server_port)
    finally:
        server.shutdown()
        thread.join()
    delivered = sqreen_otel.flush(10.0)
    provider.shutdown()
    print(f"flushed: {delivered}; counters: {sqreen_otel.stats()}\n", flush=True)
    explorer(store, "--limit", "20")
    explorer(store, "--name", "users.login.failure", "--group-by", "ip")
    explorer(store, "--name", "users.login.failure", "--group-by", "param.password")
    print("The same events in your browser (timeline, group-by, blocking an IP from its page):")
    print(f"  make ui    (or: sqreen-otel ui --store {store})", flush=True)


if __name__ == "__main__":
    main()
