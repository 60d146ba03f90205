"""``SqreenSpanProcessor``: binds request state to request spans and ships spans with events.

* ``on_start`` (request thread): for a local-root SERVER span, create the request state,
  snapshot the client-IP inputs from the WSGI environ the middleware left, and attach the
  state to the current context (see ``_state``). Cheap: no I/O, no locks of ours.
* ``_on_ending`` (SDK hook, before any ``on_end``): finalise the span's security events (so
  every processor sees the same values), detach the state, write the resolved client IP,
  and re-emit our events that ``OTEL_SPAN_EVENT_COUNT_LIMIT`` pushed out of the span.
* ``on_end``: hand the spans that carry our events, sampled or not, to the export worker
  (O(1) append); leave every other span to the host's own pipeline.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind

from sqreen_otel._config import Config, current_config
from sqreen_otel._events import LiveEvent
from sqreen_otel._export import ExportWorker
from sqreen_otel._guard import report_internal_error
from sqreen_otel._placement import rescue_evicted
from sqreen_otel._sdk_bridge import has_events
from sqreen_otel._state import RequestState, pending_environ

_MAX_OPEN_REQUESTS = 100_000  # bounds the map if an instrumentation never ends its spans


def carries_events(span: ReadableSpan) -> bool:
    return has_events(span) and any(isinstance(event, LiveEvent) for event in span.events)


class SqreenSpanProcessor(SpanProcessor):
    """Request binding for the SDK, and the export side of security events."""

    def __init__(self, exporter: SpanExporter | None = None, config: Config | None = None) -> None:
        # id(span) -> state of open request spans. The state holds the span, so an id cannot be
        # reused while it is in the map; entries leave in _on_ending.
        self._states: dict[int, RequestState] = {}
        self._worker: ExportWorker | None = None
        self.set_exporter(exporter, config or current_config())

    @property
    def exporter(self) -> SpanExporter | None:
        return self._worker.exporter if self._worker is not None else None

    def set_exporter(self, exporter: SpanExporter | None, config: Config) -> None:
        """Ship to ``exporter`` from now on (None: keep events on spans only); flushes the old one."""
        old = self._worker
        if old is not None and old.exporter is exporter:
            old.configure(config.heartbeat_delay, config.max_queue_length)
            return
        self._worker = None
        if exporter is not None:
            self._worker = ExportWorker(exporter, config.heartbeat_delay, config.max_queue_length)
        if old is not None:
            old.shutdown()

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        if span.kind is not SpanKind.SERVER:
            return
        parent = span.parent
        if parent is not None and not parent.is_remote:
            return
        try:
            config = current_config()
            if config.disable:
                return
            state = RequestState(span)
            environ = pending_environ.get()
            if environ is not None:
                state.bind_http(environ, config)
            states = self._states
            if len(states) >= _MAX_OPEN_REQUESTS:
                states.pop(next(iter(states)))  # the oldest: a span that never ended
            states[id(span)] = state
            state.attach()
        except Exception as exc:  # noqa: BLE001 - never raise into the span lifecycle
            report_internal_error("on_start", exc)

    def _on_ending(self, span: SdkSpan) -> None:
        try:
            state = self._states.pop(id(span), None)
            if state is None:
                if has_events(span):  # events recorded without request state (a job's span)
                    for event in span.events:
                        if isinstance(event, LiveEvent):
                            event.finalize()
                return
            state.detach()
            state.finish_http()
            if state.events:
                for event in state.events:
                    event.finalize()
                rescue_evicted(state)
        except Exception as exc:  # noqa: BLE001 - never raise into the span lifecycle
            report_internal_error("on_ending", exc)

    def on_end(self, span: ReadableSpan) -> None:
        worker = self._worker
        if worker is None:
            return
        try:
            if carries_events(span):
                worker.submit(span)
        except Exception as exc:  # noqa: BLE001 - never raise into the span lifecycle
            report_internal_error("on_end", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        worker = self._worker
        return worker.force_flush(timeout_millis / 1000) if worker is not None else True

    def shutdown(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.shutdown()
