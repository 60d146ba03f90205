"""Real HTTP receivers on 127.0.0.1 for the exporter tests (started and stopped by the tests).

A ``Receiver`` answers each POST with the next scripted behaviour (a status code with
headers, or a hang) and records what it received, gunzipped. ``OtlpReceiver`` decodes the
bodies as OTLP with the official ``opentelemetry-proto`` messages.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering (longer than the client's timeout: a hang)
    body_bytes: int = 0  # a response body this long (announced, then streamed until the client goes)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed
    at: float


class Receiver:
    """POST endpoint with scripted replies; after the script, ``default`` answers."""

    def __init__(
        self,
        script: list[Reply] | None = None,
        default: Reply | None = None,
        *,
        reject_containing: bytes | None = None,
        max_body: int | None = None,
        port: int = 0,
    ) -> None:
        self.script = list(script or [])
        self.default = default or Reply()
        self.reject_containing = reject_containing  # 400 for any body holding these bytes
        self.max_body = max_body  # 413 for a larger (decompressed) body
        self.received: list[Received] = []
        self.attempts: list[float] = []
        self.connections: set[tuple[str, int]] = set()  # distinct client (address, port)
        self.body_cut_short = False
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with receiver._lock:
                    receiver.attempts.append(time.monotonic())
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                plain = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                if receiver.reject_containing is not None and receiver.reject_containing in plain:
                    reply = Reply(400)
                if receiver.max_body is not None and len(plain) > receiver.max_body:
                    reply = Reply(413)
                if reply.hang:
                    receiver._release.wait(reply.hang)
                if reply.status < 300:
                    body = plain
                    with receiver._lock:
                        receiver.received.append(
                            Received(
                                self.path,
                                {k.lower(): v for k, v in self.headers.items()},
                                body,
                                time.monotonic(),
                            )
                        )
                with receiver._lock:
                    receiver.connections.add(self.client_address)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(reply.body_bytes))
                self.end_headers()
                chunk = b"x" * 65536
                sent = 0
                try:
                    while sent < reply.body_bytes:
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except OSError:
                    receiver.body_cut_short = True  # the client stopped reading: as it should

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        Handler.protocol_version = "HTTP/1.1"  # keep-alive, as real collectors do
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/batches"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self._lock:
            return list(self.received)


class OtlpReceiver(Receiver):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1/traces"

    @property
    def logs_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1/logs"

    def requests(self) -> list[ExportTraceServiceRequest]:
        decoded = []
        for item in self.received:
            if item.path.endswith("/v1/traces"):
                message = ExportTraceServiceRequest()
                message.ParseFromString(item.body)
                decoded.append(message)
        return decoded

    def log_requests(self) -> list[ExportLogsServiceRequest]:
        decoded = []
        for item in self.received:
            if item.path.endswith("/v1/logs"):
                message = ExportLogsServiceRequest()
                message.ParseFromString(item.body)
                decoded.append(message)
        return decoded


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
