"""``SqreenSpanProcessor``: binds request state to request spans and ships spans with events.

* ``on_start`` (request thread): for a local-root SERVER span, make it the current request
  with the WSGI environ the middleware left (``request_state``). Cheap: a context variable and a dict
  entry; no state object, no I/O, no lock, no resolution until the request tracks an event.
* ``_on_ending`` (SDK hook, before any ``on_end``): finalise the span's security events (so
  every processor sees the same values), undo ``on_start`` and, for a request that carries
  events, write the resolved client IP and re-emit our events that
  ``OTEL_SPAN_EVENT_COUNT_LIMIT`` pushed out of the span.
* ``on_end``: hand the spans that carry our events, sampled or not, to the shipping side (an
  O(1) append; events attached off the span's events travel in a copy of the span); leave
  every other span to the host's own pipeline.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanKind

from sqreen_otel._config import current_config
from sqreen_otel._guard import report_internal_error
from sqreen_otel._recording.live_event import LiveEvent
from sqreen_otel._recording.request_state import pending_environ, request_ending, request_started
from sqreen_otel._recording.routing import rescue_evicted, take_attached
from sqreen_otel._sdk_bridge import ON_ENDING, has_events
from sqreen_otel._shipping.assembly import Shipping
from sqreen_otel._shipping.scrubbing_exporter import with_events


class SqreenSpanProcessor(SpanProcessor):
    """Request binding for the SDK, and the export side of security events."""

    ships_security_events = True  # how placement tells a provider with our processor on it

    def __init__(self, shipping: Shipping | None = None) -> None:
        self._event_counts: dict[int, int] = {}  # span id -> our events, from _on_ending to on_end
        self._attached: dict[int, list[LiveEvent]] = {}  # span id -> events kept off its span events
        self.shipping = shipping if shipping is not None else Shipping()

    def set_shipping(self, shipping: Shipping) -> None:
        """Ship through ``shipping`` from now on; the previous one is flushed and closed."""
        old, self.shipping = self.shipping, shipping
        if old is not shipping:
            old.shutdown(current_config().graceful_timeout, keep=shipping.pipelines)

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        if span.kind is not SpanKind.SERVER:
            return
        parent = span.parent
        if parent is not None and not parent.is_remote:
            return
        try:
            if not current_config().disable:
                request_started(span, pending_environ.get())
        except Exception as exc:  # noqa: BLE001 - never raise into the span lifecycle
            report_internal_error("on_start", exc)

    def _on_ending(self, span: ReadableSpan) -> None:
        """The span-end work, before any processor's ``on_end`` (see ``_sdk_bridge.ON_ENDING``)."""
        try:
            span_id = span.context.span_id if span.context else 0
            state = request_ending(span)
            attached = take_attached(span_id)
            if state is not None and state.events:
                state.finish_http()
                rescue_evicted(state, attached)  # finalises the evicted ones; the scans below, the others
            ours = len(attached)
            for event in attached:
                event.finalize()
            if has_events(span):
                for candidate in span.events:
                    if isinstance(candidate, LiveEvent):
                        candidate.finalize()
                        ours += 1
            if ours and self.shipping.active:
                self._event_counts[span_id] = ours
                if attached:
                    self._attached[span_id] = attached
        except Exception as exc:  # noqa: BLE001 - never raise into the span lifecycle
            report_internal_error("on_ending", exc)

    def on_end(self, span: ReadableSpan) -> None:
        if not ON_ENDING:
            self._on_ending(span)  # an SDK without the hook: we are first in line (install_processor)
        if not self._event_counts:
            return
        try:
            # A new ReadableSpan object: find the count by span id (_on_ending ran just before).
            span_id = span.context.span_id if span.context else 0
            events = self._event_counts.pop(span_id, 0)
            if events:
                attached = self._attached.pop(span_id, None)
                if attached:  # ours kept off the span, with any span events (a mode switched mid-span)
                    span = with_events(span, [*span.events, *attached])
                self.shipping.submit(span, events)
        except Exception as exc:  # noqa: BLE001
            report_internal_error("on_end", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.shipping.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        self.close(current_config().graceful_timeout)

    def close(self, timeout: float) -> None:
        """Flush and stop within ``timeout`` seconds (once: later calls return at once)."""
        self.shipping.shutdown(timeout)
