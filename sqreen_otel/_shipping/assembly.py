"""Everything that ships the events of one tracer provider, composed from the settings.

* The built-in exporters (``SQREEN_EXPORTER``): one ``Spool`` writes every event, scrubbed, to
  the store on disk (the ``local`` store and the durable queue), prints it if ``console`` is
  on, and one ``Drainer`` per remote exporter (``otlp``, ``http``) delivers the store's events.
* An exporter instance given to ``configure(exporter=...)``: an in-memory ``ExportPipeline``
  of scrubbed span copies (a ``SpanExporter`` needs spans, which the store does not keep).

``flush`` and ``shutdown`` reach every part whatever the others do; ``flush`` is True only if
every event submitted before it was delivered or durably stored, and none was dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from sqreen_otel._config import Config
from sqreen_otel._log import logger
from sqreen_otel._recording.routing import end_open_carriers
from sqreen_otel._scrubbing.scrubber import scrubber_for
from sqreen_otel._shipping import store as _store
from sqreen_otel._shipping.drain import Drainer, DrainSettings
from sqreen_otel._shipping.pipeline import ExportPipeline, PipelineSettings
from sqreen_otel._shipping.spool import Spool, SpoolSettings
from sqreen_otel._stats import stats
from sqreen_otel.exporters import REMOTE, ConsoleEventExporter, remote_exporter_factories


class Shipping:
    """The spool, drainers and pipelines of one provider."""

    def __init__(
        self,
        spool: Spool | None = None,
        drainers: Sequence[Drainer] = (),
        pipelines: Sequence[ExportPipeline] = (),
    ) -> None:
        self.spool = spool
        self.drainers = tuple(drainers)
        self.pipelines = tuple(pipelines)
        self._closed = False
        self._drops_seen = _dropped()  # drops since the last flush make the next one False

    @classmethod
    def from_config(cls, config: Config, service: str | None) -> Shipping:
        """The built-in exporters named by ``config.exporter`` (``none``: nothing at all), and
        the app's ``LoggerProvider`` if the events are log records (``SQREEN_EVENT_SIGNAL``)."""
        names = config.exporter
        if not names and config.playbooks_file is None:
            return cls(pipelines=app_logs_pipelines(config))
        remote = [name for name in names if name in REMOTE]
        playbooks = config.playbooks_file is not None
        path = config.local_store if ("local" in names or remote or playbooks) else None
        factories = []
        destinations: dict[str, str] = {}
        for name, factory in remote_exporter_factories(config, service) if path is not None else []:
            try:
                destinations[name] = factory().destination
            except ValueError as error:  # an unusable OTEL_EXPORTER_OTLP_* value: that exporter is off
                logger.error("sqreen_otel %s exporter is off: %s.", name, error)
                continue
            factories.append((name, factory))
        if playbooks and path is not None:  # the evaluator: one more consumer of the store
            from sqreen_otel._playbooks.evaluator import DESTINATION, evaluator_factory

            destinations["playbooks"] = DESTINATION
            factories.append(("playbooks", evaluator_factory(config)))
        # This app's routes: its service and each destination (a queue shared only with alike apps).
        origin = _store.origin_for(service, destinations)
        spool = Spool(
            path,
            scrubber_for(config),
            SpoolSettings(
                config.spool_interval,
                config.batch_size,
                config.max_queue_length,
                int(config.store_max_mb * 1024 * 1024),
                config.store_max_age,
            ),
            origin=origin,
            console=ConsoleEventExporter if "console" in names else None,
        )
        drainers = []
        settings = DrainSettings(config.heartbeat_delay, config.batch_size, config.graceful_timeout)
        # The playbooks' evaluator keeps its counts in memory: it keeps the lease (one per host).
        evaluator = DrainSettings(
            config.playbooks_interval, config.batch_size, config.graceful_timeout, keep_lease=True
        )
        for name, factory in factories:
            assert path is not None
            drainer = Drainer(
                name,
                factory,
                path,
                route=origin.routes[name],
                settings=evaluator if name == "playbooks" else settings,
            )
            spool.on_written.append(drainer.poke)
            drainers.append(drainer)
        return cls(spool, drainers, app_logs_pipelines(config))

    @property
    def active(self) -> bool:
        return self.spool is not None or bool(self.pipelines)

    def submit(self, span: ReadableSpan, events: int) -> None:
        if self.spool is not None:
            self.spool.submit(span, events)
        for pipeline in self.pipelines:
            pipeline.submit(span, events)

    def flush(self, timeout: float) -> bool:
        if self._closed:
            return True  # shut down: nothing left to flush here
        end_open_carriers()  # builders still open outside a request: their events are final now
        deadline = time.monotonic() + timeout
        durable = self.spool.flush(timeout) if self.spool is not None else True
        tickets = [drainer.request_drain() for drainer in self.drainers]  # they drain in parallel
        drained = [
            drainer.wait_drained(ticket, max(0.0, deadline - time.monotonic()))
            for drainer, ticket in zip(self.drainers, tickets, strict=True)
        ]
        delivered = [pipeline.flush(max(0.0, deadline - time.monotonic())) for pipeline in self.pipelines]
        drops = _dropped()
        dropped = any(dropped_now for _, dropped_now in drained) or drops != self._drops_seen
        self._drops_seen = drops
        return durable and all(delivered) and not dropped

    def shutdown(self, timeout: float, keep: Sequence[ExportPipeline] = ()) -> None:
        """Stop all (but the pipelines in ``keep``, handed to the next shipping), then give each
        the rest of one shared deadline (they finish in parallel). Once: the provider's own
        shutdown and ours may both call it."""
        if self._closed:
            return
        self._closed = True
        end_open_carriers()
        deadline = time.monotonic() + timeout
        pipelines = [pipeline for pipeline in self.pipelines if pipeline not in keep]
        for pipeline in pipelines:
            pipeline.stop()
        if self.spool is not None:
            self.spool.finish(deadline)
        for drainer in self.drainers:
            drainer.stop()
        for drainer in self.drainers:
            drainer.finish(deadline)
        for pipeline in pipelines:
            pipeline.finish(deadline)


def app_logs_pipelines(config: Config) -> list[ExportPipeline]:
    """The pipeline of log records to the app's ``LoggerProvider``, if ``SQREEN_EVENT_SIGNAL``
    asks for them: in memory (the app's log pipeline is the destination), every
    ``SQREEN_SPOOL_INTERVAL`` like the store."""
    if "logs" not in config.event_signals:
        return []
    from sqreen_otel.exporters.logs import LoggerProviderEventExporter

    settings = PipelineSettings(
        config.spool_interval, config.batch_size, config.max_queue_length, config.graceful_timeout
    )
    return [ExportPipeline("logs", LoggerProviderEventExporter, settings)]


def _dropped() -> int:
    return sum(count for name, count in stats.snapshot().items() if name.startswith("events_dropped."))
