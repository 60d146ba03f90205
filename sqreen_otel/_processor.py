"""``SqreenSpanProcessor``: binds request state to request spans and ships spans with events.

* ``on_start`` (request thread): for a local-root SERVER span, create the request state,
  snapshot the client-IP inputs from the WSGI environ the middleware left, and attach the
  state to the current context (see ``_state``). Cheap: no I/O, no locks of ours.
* ``_on_ending`` (SDK hook, before any ``on_end``): finalise the span's security events (so
  every processor sees the same values), detach the state, write the resolved client IP,
  and re-emit our events that ``OTEL_SPAN_EVENT_COUNT_LIMIT`` pushed out of the span.
* ``on_end``: hand the spans that carry our events, sampled or not, to each export pipeline
  (an O(1) append per pipeline); leave every other span to the host's own pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanKind

from sqreen_otel._config import current_config
from sqreen_otel._events import LiveEvent
from sqreen_otel._guard import report_internal_error
from sqreen_otel._pipeline import ExportPipeline
from sqreen_otel._placement import rescue_evicted
from sqreen_otel._sdk_bridge import has_events
from sqreen_otel._state import RequestState, pending_environ

_MAX_OPEN_REQUESTS = 100_000  # bounds the map if an instrumentation never ends its spans


class SqreenSpanProcessor(SpanProcessor):
    """Request binding for the SDK, and the export side of security events."""

    def __init__(self, pipelines: Sequence[ExportPipeline] = ()) -> None:
        # id(span) -> state of open request spans. The state holds the span, so an id cannot be
        # reused while it is in the map; entries leave in _on_ending.
        self._states: dict[int, RequestState] = {}
        self._event_counts: dict[int, int] = {}  # span id -> our events, from _on_ending to on_end
        self.pipelines: tuple[ExportPipeline, ...] = tuple(pipelines)

    def set_pipelines(self, pipelines: Sequence[ExportPipeline]) -> None:
        """Ship through ``pipelines`` from now on; the ones no longer used are flushed and closed."""
        old, self.pipelines = self.pipelines, tuple(pipelines)
        retired = [pipeline for pipeline in old if pipeline not in self.pipelines]
        _shut_down(retired, current_config().graceful_timeout)

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
            if state is not None:
                state.detach()
                state.finish_http()
                if state.events:
                    rescue_evicted(state)  # finalises the evicted ones; the scan below, the others
            if not has_events(span):
                return
            ours = 0
            for candidate in span.events:
                if isinstance(candidate, LiveEvent):
                    candidate.finalize()
                    ours += 1
            if ours and self.pipelines:
                self._event_counts[span.context.span_id] = ours
        except Exception as exc:  # noqa: BLE001 - never raise into the span lifecycle
            report_internal_error("on_ending", exc)

    def on_end(self, span: ReadableSpan) -> None:
        if not self._event_counts:
            return
        try:
            # A new ReadableSpan object: find the count by span id (_on_ending ran just before).
            events = self._event_counts.pop(span.context.span_id, 0) if span.context else 0
            if events:
                for pipeline in self.pipelines:
                    pipeline.submit(span, events)
        except Exception as exc:  # noqa: BLE001
            report_internal_error("on_end", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        return all(pipeline.flush(max(0.0, deadline - time.monotonic())) for pipeline in self.pipelines)

    def shutdown(self) -> None:
        _shut_down(self.pipelines, current_config().graceful_timeout)


def _shut_down(pipelines: Sequence[ExportPipeline], timeout: float) -> None:
    """Stop all, then give each the rest of one shared deadline (they drain in parallel)."""
    deadline = time.monotonic() + timeout
    for pipeline in pipelines:
        pipeline.stop()
    for pipeline in pipelines:
        pipeline.finish(deadline)
