"""``configure()``: settings plus installation into an OpenTelemetry SDK tracer provider.

Installs, once per provider, our span processor (request binding, export of spans carrying
security events) and wraps the provider's sampler in ``SecurityEventSampler``. Call it right
after creating the provider and before instrumenting: tracers created earlier keep the
sampler they were created with. Calling it again replaces the settings and the exporter.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from sqreen_otel._config import Config, build_config, set_current_config
from sqreen_otel._log import log_once, warn_once
from sqreen_otel._placement import use_provider
from sqreen_otel._processor import SqreenSpanProcessor
from sqreen_otel._sampler import SecurityEventSampler
from sqreen_otel.exporters import build_exporter

_lock = threading.Lock()
_processors: weakref.WeakKeyDictionary[SdkTracerProvider, SqreenSpanProcessor] = weakref.WeakKeyDictionary()
_UNSET: Any = object()


def configure(
    *,
    disable: bool = _UNSET,
    ip_header: str | None = _UNSET,
    trusted_proxies: str | list[str] | tuple[str, ...] = _UNSET,
    max_event_properties: int = _UNSET,
    log_level: str | None = _UNSET,
    exporter: str | SpanExporter = _UNSET,
    heartbeat_delay: float = _UNSET,
    max_queue_length: int = _UNSET,
    tracer_provider: trace.TracerProvider | None = None,
) -> Config:
    """Apply settings (arguments beat ``SQREEN_*`` environment variables) and install the SDK.

    ``exporter`` is a ``SQREEN_EXPORTER`` name or any ``SpanExporter``. ``tracer_provider``
    defaults to the global one. Raises ``TypeError``/``ValueError`` for a bad argument.
    """
    arguments = {
        "disable": disable,
        "ip_header": ip_header,
        "trusted_proxies": trusted_proxies,
        "max_event_properties": max_event_properties,
        "log_level": log_level,
        "exporter": exporter,
        "heartbeat_delay": heartbeat_delay,
        "max_queue_length": max_queue_length,
    }
    overrides = {key: value for key, value in arguments.items() if value is not _UNSET}
    exporter_instance: SpanExporter | None = None
    if isinstance(exporter, SpanExporter):
        exporter_instance = exporter
        del overrides["exporter"]
    config = build_config(overrides)
    log_once.reset()
    set_current_config(config)
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if config.disable:
        return config
    if not isinstance(provider, SdkTracerProvider):
        use_provider(None)
        warn_once(
            "no_sdk_provider",
            "sqreen_otel needs an OpenTelemetry SDK TracerProvider (got %s): set one up before "
            "calling configure(); events are recorded only on spans that record.",
            type(provider).__name__,
        )
        return config
    span_exporter = exporter_instance if exporter_instance is not None else build_exporter(config.exporter)
    install(provider, span_exporter, config)
    return config


def install(
    provider: SdkTracerProvider, exporter: SpanExporter | None, config: Config
) -> SqreenSpanProcessor:
    """Add our processor to ``provider`` (once) and wrap its sampler (once)."""
    with _lock:
        processor = _processors.get(provider)
        if processor is None:
            processor = SqreenSpanProcessor(exporter, config)
            provider.add_span_processor(processor)
            _processors[provider] = processor
        else:
            processor.set_exporter(exporter, config)
        if not isinstance(provider.sampler, SecurityEventSampler):
            provider.sampler = SecurityEventSampler(provider.sampler)
        use_provider(provider)
    return processor


def flush(timeout: float = 5.0) -> bool:
    """Export every queued security event now; False if ``timeout`` seconds were not enough."""
    with _lock:
        processors = list(_processors.values())
    return all(processor.force_flush(int(timeout * 1000)) for processor in processors)
