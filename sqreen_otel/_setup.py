"""``configure()``: settings plus installation into an OpenTelemetry SDK tracer provider.

Installs, once per provider, our span processor (request binding, export of spans carrying
security events). The provider's sampler is left alone: our carrier spans have a tracer of
their own (``_sdk_bridge.carrier_tracer``). Calling it again replaces the settings and the
exporter.
"""

from __future__ import annotations

import atexit
import functools
import threading
import time
import weakref
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from sqreen_otel import _fork
from sqreen_otel._config import Config, build_config, current_config, set_current_config
from sqreen_otel._log import reset_logs, warn_once
from sqreen_otel._recording.routing import use_provider
from sqreen_otel._responses.setup import install as install_responses
from sqreen_otel._scrubbing.scrubber import scrubber_for
from sqreen_otel._sdk_bridge import install_processor
from sqreen_otel._shipping.assembly import Shipping, app_logs_pipelines
from sqreen_otel._shipping.pipeline import ExportPipeline, PipelineSettings
from sqreen_otel._shipping.processor import SqreenSpanProcessor
from sqreen_otel._shipping.scrubbing_exporter import ScrubbingSpanExporter
from sqreen_otel.exporters.logs import use_logger_provider

_lock = threading.Lock()


def _reinit_lock() -> None:
    global _lock  # noqa: PLW0603 - replaced in a forked child
    _lock = threading.Lock()


_fork.in_child(_reinit_lock)
_processors: weakref.WeakKeyDictionary[SdkTracerProvider, SqreenSpanProcessor] = weakref.WeakKeyDictionary()
_UNSET: Any = object()
_exit_hook_registered = False


def configure(
    *,
    disable: bool = _UNSET,
    ip_header: str | None = _UNSET,
    trusted_proxies: str | list[str] | tuple[str, ...] = _UNSET,
    max_event_properties: int = _UNSET,
    log_level: str | None = _UNSET,
    exporter: str | list[str] | tuple[str, ...] | SpanExporter = _UNSET,
    event_signal: str | None = _UNSET,
    heartbeat_delay: float = _UNSET,
    batch_size: int = _UNSET,
    max_queue_length: int = _UNSET,
    graceful_timeout: float = _UNSET,
    spool_interval: float = _UNSET,
    store_max_mb: float = _UNSET,
    store_max_age: float = _UNSET,
    strip_sensitive_data: bool = _UNSET,
    strip_sensitive_keys: str | list[str] | tuple[str, ...] = _UNSET,
    strip_sensitive_key_regexp: str | None = _UNSET,
    strip_sensitive_value_regexp: str | None = _UNSET,
    user_id_hmac_key: str | None = _UNSET,
    user_on_host_spans: bool = _UNSET,
    ingestion_url: str | None = _UNSET,
    otlp_endpoint: str | None = _UNSET,
    token: str | None = _UNSET,
    app_name: str | None = _UNSET,
    local_store: str = _UNSET,
    responses: bool = _UNSET,
    actions_file: str | None = _UNSET,
    actions_store: str | None = _UNSET,
    redis_url: str | None = _UNSET,
    redis_prefix: str = _UNSET,
    actions_refresh: float = _UNSET,
    ip_passlist: str | list[str] | tuple[str, ...] | None = _UNSET,
    path_passlist: str | list[str] | tuple[str, ...] | None = _UNSET,
    block_status: int = _UNSET,
    block_html_file: str | None = _UNSET,
    block_json_file: str | None = _UNSET,
    playbooks_file: str | None = _UNSET,
    playbooks_interval: float = _UNSET,
    tracer_provider: trace.TracerProvider | None = None,
    logger_provider: LoggerProvider | None = None,
) -> Config:
    """Apply settings (arguments beat ``SQREEN_*`` environment variables) and install the SDK.

    ``exporter`` is a ``SQREEN_EXPORTER`` value (names, comma-separated or a list) or any
    ``SpanExporter``, which then gets the same scrubbing and pipeline. ``tracer_provider``
    defaults to the global one; ``logger_provider`` (for ``event_signal`` ``logs``/``both``)
    too. Raises ``TypeError``/``ValueError`` for a bad argument.
    """
    arguments = {
        key: value for key, value in locals().items() if key not in ("tracer_provider", "logger_provider")
    }
    overrides = {key: value for key, value in arguments.items() if value is not _UNSET}
    if logger_provider is not None and not isinstance(logger_provider, LoggerProvider):
        raise TypeError(f"logger_provider: expected a LoggerProvider, got {type(logger_provider).__name__}")
    use_logger_provider(logger_provider)
    exporter_instance: SpanExporter | None = None
    if isinstance(exporter, SpanExporter):
        exporter_instance = exporter
        del overrides["exporter"]
    config = build_config(overrides)
    reset_logs()
    set_current_config(config)
    _warn_about_copies(config)
    install_responses(config)
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
    install(provider, config, exporter_instance)
    return config


def _warn_about_copies(config: Config) -> None:
    """Events asked for in the app's telemetry *and* shipped by our ``otlp`` exporter: a
    Collector receiving both gets each event twice (each copy carries ``sqreen.event.id``)."""
    if "otlp" in config.exporter and config.event_signals:
        warn_once(
            "signal_and_otlp",
            "SQREEN_EVENT_SIGNAL=%s with SQREEN_EXPORTER=otlp: a Collector that receives the app's "
            "%s and sqreen-otel's log records gets each security event twice (both copies carry "
            "sqreen.event.id). Leave SQREEN_EVENT_SIGNAL unset for one copy per Collector.",
            config.event_signal,
            " and ".join("traces" if signal == "span" else "logs" for signal in sorted(config.event_signals)),
        )


def _shipping(
    config: Config, exporter_instance: SpanExporter | None, current: Shipping, service: str | None
) -> Shipping:
    """The built-in exporters' spool and drainers; or one in-memory pipeline for an exporter
    instance (the pipeline already shipping to that same instance is kept, and so is the
    pipeline of log records if still wanted: ``set_shipping`` leaves kept parts running)."""
    if exporter_instance is None:
        return Shipping.from_config(config, service)
    settings = PipelineSettings(
        config.heartbeat_delay, config.batch_size, config.max_queue_length, config.graceful_timeout
    )
    scrubber = scrubber_for(config)
    custom = None
    for pipeline in current.pipelines:
        exporter = pipeline.exporter
        if isinstance(exporter, ScrubbingSpanExporter) and exporter.wrapped is exporter_instance:
            pipeline.settings = settings
            exporter.scrubber = scrubber
            custom = pipeline
    if custom is None:
        # Our pipeline's exporter: scrubbed copies with what our exporters ship (``ours``).
        factory = functools.partial(ScrubbingSpanExporter, exporter_instance, scrubber, ours=True)
        custom = ExportPipeline("custom", factory, settings)
    logs = [pipeline for pipeline in current.pipelines if pipeline.name == "logs"]
    if "logs" not in config.event_signals:
        logs = []
    elif not logs:
        logs = app_logs_pipelines(config)
    return Shipping(pipelines=[custom, *logs])


def _service_name(provider: SdkTracerProvider) -> str | None:
    """``service.name`` of the provider's resource (what the store records per event)."""
    value = provider.resource.attributes.get("service.name")
    return value if isinstance(value, str) and value else None


def install(
    provider: SdkTracerProvider, config: Config, exporter: SpanExporter | None = None
) -> SqreenSpanProcessor:
    """Add our processor to ``provider`` (once) and set what it ships through."""
    global _exit_hook_registered  # noqa: PLW0603 - one exit hook for the process
    with _lock:
        processor = _processors.get(provider)
        if processor is None:
            processor = SqreenSpanProcessor()
            install_processor(provider, processor)
            _processors[provider] = processor
        processor.set_shipping(_shipping(config, exporter, processor.shipping, _service_name(provider)))
        use_provider(provider)
        if not _exit_hook_registered:
            # Our own exit flush: the host's provider may not shut down at exit (shutdown_on_exit=False).
            atexit.register(shutdown)
            _exit_hook_registered = True
    return processor


def flush(timeout: float = 5.0) -> bool:
    """Export every queued security event now; False if ``timeout`` seconds were not enough."""
    deadline = time.monotonic() + timeout
    with _lock:
        processors = list(_processors.values())
    results = [  # every processor is flushed, whatever the others do
        processor.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000)) for processor in processors
    ]
    return all(results)


def shutdown() -> None:
    """Flush and close every pipeline within ``SQREEN_GRACEFUL_TIMEOUT`` (also run at exit)."""
    with _lock:
        processors = list(_processors.values())
    deadline = time.monotonic() + current_config().graceful_timeout  # one budget for them all
    for processor in processors:
        processor.close(max(0.0, deadline - time.monotonic()))
