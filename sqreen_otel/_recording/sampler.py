"""``SecurityEventSampler``: security events survive trace sampling.

A request whose trace is not sampled records nothing (so it costs what it costs without us);
its first security event starts one of our *carrier* spans, with the request's fields from the
WSGI environ (``routing``). Carriers are started by our own tracer, whose sampler is the
host's wrapped in this one (the host's sampler itself is never replaced: its spans cost and
decide exactly as without us). Where the host's sampler would DROP a carrier, this answers
RECORD_ONLY instead: the carrier records but stays *unsampled*, so the host's own processors
and exporters still skip it and downstream services still see "not sampled". Our processor
ships the spans that carry security events, whatever their sampled flag. When our events are
not span events (``SQREEN_EVENT_SIGNAL`` ``logs`` or ``none``) every carrier is RECORD_ONLY:
the app's exporters would only see an empty ``sqreen.events`` span.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from sqreen_otel._config import current_config


def _parent_state(parent_context: Context | None) -> TraceState | None:
    """The trace state a child keeps (the parent's), as the SDK's samplers do."""
    return trace.get_current_span(parent_context).get_span_context().trace_state


class SecurityEventSampler(Sampler):
    """The wrapped sampler's decisions, except that DROP becomes RECORD_ONLY (for our carriers)."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(  # noqa: PLR0917 - the Sampler interface's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not current_config().events_on_spans:
            return SamplingResult(Decision.RECORD_ONLY, attributes, _parent_state(parent_context))
        result = self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP:
            return result
        # The span's attributes are the sampling result's: a DROP result carries none.
        return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)

    def get_description(self) -> str:
        return f"SecurityEventSampler{{{self.delegate.get_description()}}}"
