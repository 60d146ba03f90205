"""Run by compat.py in an app's venv right after a plain ``pip install sqreen-otel``: no extras,
no test tools, only what the core requires. Events tracked on a request span reach the local
store (the default exporter) and ``sqreen-otel events`` shows them, scrubbed; asking for the
``otlp`` exporter without the ``[otlp]`` extra breaks nothing in the app (an error says what to
install).

    python smoke.py STORE [EXPORTER]     # prints one JSON line: what the explorer read back
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import sqreen_otel


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(store: str, exporter: str) -> None:
    logs = Collect()
    logging.getLogger("sqreen_otel").addHandler(logs)
    provider = TracerProvider()
    sqreen_otel.configure(tracer_provider=provider, exporter=exporter, local_store=store)
    with provider.get_tracer("smoke").start_as_current_span("POST /login", kind=SpanKind.SERVER):
        sqreen_otel.auth_track(False, username="ann")
        sqreen_otel.track("smoke.checked", properties={"password": "hunter2", "step": 1})
    sqreen_otel.flush(10)
    sqreen_otel.shutdown()
    script = Path(sys.executable).with_name("sqreen-otel")
    read = subprocess.run(
        [str(script), "events", "--json", "--store", store], capture_output=True, text=True, check=True
    )
    events = [json.loads(line) for line in read.stdout.splitlines()]
    print(
        json.dumps(
            {
                "events": sorted(event["name"] for event in events),
                "properties": [event["properties"] for event in events if event["name"] == "smoke.checked"],
                "stats": sqreen_otel.stats(),
                "logged": logs.messages,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "local")
