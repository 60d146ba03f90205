"""sqreen-otel: Sqreen's custom security events SDK, on OpenTelemetry.

Record security-relevant business events (signup, login success/failure, anything custom) as
span events on the HTTP request span they belong to, with the user who did them::

    import sqreen_otel

    sqreen_otel.from_context().track_event("payment").with_properties({"amount": 42})
    sqreen_otel.from_context().for_user({"uid": "u-1"}).track_auth_success()
    sqreen_otel.track("password.reset", properties={"method": "email"})

See README.md for set-up and docs/events.md for the event schema.
"""

from sqreen_otel._config import Config, current_config
from sqreen_otel._recording.api import auth_track, identify, is_blocked, signup_track, track
from sqreen_otel._recording.builders import RequestRecord, TrackedEvent, UserRecord, from_context
from sqreen_otel._recording.sampler import SecurityEventSampler
from sqreen_otel._responses.enforcement import RequestBlocked
from sqreen_otel._setup import configure, flush, shutdown
from sqreen_otel._shipping.processor import SqreenSpanProcessor
from sqreen_otel._shipping.scrubbing_exporter import ScrubbingSpanExporter
from sqreen_otel._stats import stats as _stats
from sqreen_otel._version import __version__


def stats() -> dict[str, int]:
    """Counts of what happened to events in this process (names in docs/events.md)."""
    return _stats.snapshot()


__all__ = [
    "Config",
    "RequestBlocked",
    "RequestRecord",
    "ScrubbingSpanExporter",
    "SecurityEventSampler",
    "SqreenSpanProcessor",
    "TrackedEvent",
    "UserRecord",
    "__version__",
    "auth_track",
    "configure",
    "current_config",
    "flush",
    "from_context",
    "identify",
    "is_blocked",
    "shutdown",
    "signup_track",
    "stats",
    "track",
]
