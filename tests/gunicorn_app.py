"""A WSGI app for test_gunicorn.py, configured at import: with --preload, in the master."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider

import sqreen_otel
from sqreen_otel.wsgi import SqreenMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

provider = TracerProvider()  # exits flush it (atexit), in each worker
sqreen_otel.configure(tracer_provider=provider)  # SQREEN_EXPORTER=local, SQREEN_LOCAL_STORE from the test
MASTER_PID = os.getpid()


def view(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    request_id = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))["id"][0]
    sqreen_otel.track("order.placed", properties={"request": request_id, "pid": os.getpid()})
    time.sleep(0.01)  # keep a worker busy so both serve
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {MASTER_PID}".encode()]


app = OpenTelemetryMiddleware(SqreenMiddleware(view), tracer_provider=provider)
