"""``SecurityEventSampler``: security events survive trace sampling.

Wraps the host's sampler. A request whose trace is not sampled records nothing (so it costs
what it costs without us); its first security event starts one of our *carrier* spans, with
the request's fields from the WSGI environ (``_placement``). When the host's sampler would
DROP a carrier, we answer RECORD_ONLY instead: the carrier records but stays *unsampled*, so
the host's own processors and exporters still skip it and downstream services still see "not
sampled". Our processor ships the spans that carry security events, whatever their sampled
flag. Every other decision is the wrapped sampler's, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from sqreen_otel import _schema


class SecurityEventSampler(Sampler):
    """Keeps our event carriers RECORD_ONLY instead of dropping them."""

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
        if attributes is not None and _schema.CARRIER_REASON in attributes:
            # The span's attributes are the sampling result's: a DROP result carries none.
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"SecurityEventSampler{{{self.delegate.get_description()}}}"
