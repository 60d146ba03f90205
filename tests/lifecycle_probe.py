"""Run by test_lifecycle.py in a fresh process: ``exit`` or ``fork`` scenario.

Exports go to a JSON-lines file (one line per export: the pid and the event names), so
every process's deliveries can be checked after they have all exited.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import sqreen_otel


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        names = [event.name for span in spans for event in span.events]
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"pid": os.getpid(), "events": names}) + "\n")
        return SpanExportResult.SUCCESS


def main(scenario: str, path: str) -> None:
    provider = TracerProvider()  # registers its own exit hook, as a host app's provider does
    sqreen_otel.configure(tracer_provider=provider, exporter=FileExporter(path), heartbeat_delay=3600)
    if os.environ.get("PROBE_NO_THREADS_AT_EXIT"):  # Python 3.12+'s exit, on any Python
        import _no_threads_at_exit

        _no_threads_at_exit.install()
    tracer = provider.get_tracer("probe")
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        sqreen_otel.track(f"{scenario}.in.request")
    sqreen_otel.track(f"{scenario}.no.request")
    if scenario == "fork":
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("GET /child", kind=SpanKind.SERVER):
                sqreen_otel.track("child.event")
            sys.exit(0)  # a normal exit in the child runs its exit hooks
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        sqreen_otel.track("parent.after.fork")
    print(os.getpid())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
