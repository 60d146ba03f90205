"""Zero-code setup: the ``opentelemetry_pre_instrument`` entry point.

``opentelemetry-instrument`` runs the distro and configurator (which create the tracer
provider), then the pre-instrument hooks, then the instrumentors. Running before the
instrumentors matters: the tracers they create capture the provider's sampler, which we wrap.
If no configurator is installed (no ``opentelemetry-distro`` nor a vendor distro), nothing has
set up the SDK; we then run the SDK's own environment-driven configurator, so
``pip install sqreen-otel`` plus ``opentelemetry-instrument`` is enough.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from sqreen_otel._guard import report_internal_error
from sqreen_otel._log import logger


def _sdk_configuration_failed(exc: Exception) -> None:
    """Say what failed (the OTEL_* settings), not "internal error": the SDK's message, scrubbed."""
    from sqreen_otel._scrubbing.scrubber import Scrubber

    detail = Scrubber().scrub_text(str(exc)[:300])
    logger.error(
        "OpenTelemetry SDK auto-configuration from OTEL_* failed (%s: %s), so nothing is traced "
        "and sqreen_otel records nothing. For instance OTEL_TRACES_EXPORTER=otlp needs its exporter "
        "package: pip install opentelemetry-exporter-otlp-proto-http and set "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf.",
        type(exc).__name__,
        detail,
    )


def pre_instrument() -> None:
    """Configure sqreen_otel from the environment; never breaks the host's start-up."""
    try:
        from sqreen_otel._config import otel_sdk_disabled
        from sqreen_otel._sdk_bridge import configure_sdk_from_environment
        from sqreen_otel._setup import configure

        if otel_sdk_disabled(os.environ):
            logger.info("OTEL_SDK_DISABLED is set: sqreen_otel records nothing.")
            configure()  # disabled: installs nothing, and says nothing more
            return
        # Set up the host's tracing even when SQREEN_DISABLE is set: disabling us must not
        # disable them. configure() itself installs nothing when disabled.
        if not isinstance(trace.get_tracer_provider(), SdkTracerProvider):
            logger.info("No OpenTelemetry SDK configurator ran; sqreen_otel configures the SDK from OTEL_*.")
            try:
                configure_sdk_from_environment()
            except Exception as exc:  # noqa: BLE001 - the SDK's own configuration, from OTEL_* settings
                _sdk_configuration_failed(exc)
                return
        configure()
    except Exception as exc:  # noqa: BLE001 - a bad setting must not stop the app from starting
        report_internal_error("pre_instrument", exc)
