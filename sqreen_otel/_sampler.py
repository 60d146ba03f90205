"""``SecurityEventSampler``: security events survive trace sampling.

Wraps the host's sampler. When it would DROP a local-root SERVER span (an incoming
``traceparent ...-00``, a ratio sampler) or one of our carrier spans, we answer RECORD_ONLY
instead: the span records (so events can be added to it) but stays *unsampled*, so the
host's own BatchSpanProcessor/exporters still skip it and downstream services still see
"not sampled". Our processor exports the spans that carry security events, whatever their
sampled flag. Every other decision is the wrapped sampler's, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from sqreen_otel import _schema


class SecurityEventSampler(Sampler):
    """Keeps request (SERVER root) spans and event carriers RECORD_ONLY instead of dropping them."""

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
        result = self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP:
            return result
        if (kind is SpanKind.SERVER and _is_local_root(parent_context)) or (
            attributes is not None and _schema.CARRIER_REASON in attributes
        ):
            return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"SecurityEventSampler{{{self.delegate.get_description()}}}"


def _is_local_root(parent_context: Context | None) -> bool:
    parent = trace.get_current_span(parent_context).get_span_context()
    return not parent.is_valid or parent.is_remote
