"""Run by test_semconv_modes.py in a fresh process (the instrumentation reads
OTEL_SEMCONV_STABILITY_OPT_IN once per process): one request through each framework,
printed as JSON: the request context derived from each server span, its attribute keys and
its event names."""

from __future__ import annotations

import json
import sys

import framework_apps
from _support import make_otel
from opentelemetry.trace import SpanKind
from werkzeug.test import Client

from sqreen_otel._http.request_context import request_context


def main() -> None:
    otel = make_otel()
    apps = {
        "wsgi": framework_apps.plain_wsgi(otel.provider, sqreen_outside=False),
        **framework_apps.instrumented_apps(otel.provider),
    }
    report = {}
    for name, app in apps.items():
        otel.app.clear()
        Client(app).post(
            "/login?user=ann&next=%2F",
            headers={"X-Forwarded-For": "203.0.114.7", "User-Agent": "probe/1"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
            buffered=True,
        )
        (span,) = [s for s in otel.app_spans() if s.kind is SpanKind.SERVER]
        attributes = dict(span.attributes or {})
        report[name] = {
            "context": request_context(attributes)._asdict(),
            "keys": sorted(attributes),
            "events": [event.name for event in span.events],
        }
    otel.provider.shutdown()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
