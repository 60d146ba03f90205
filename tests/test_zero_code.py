"""Zero-code: ``opentelemetry-instrument python app.py`` enables the SDK, no code change."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _instrumentations import needs
from _support import run_python

pytestmark = needs("flask")  # the zero-code app is a Flask app

APP = Path(__file__).with_name("zero_code_app.py")
INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
#: With a distro (``sqreen-otel[auto]``), its configurator sets up the SDK; without, our hook runs
#: the SDK's own. `make unit` runs without, the compatibility runner's oldest entry with.
DISTRO = importlib.util.find_spec("opentelemetry.distro") is not None


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON spans a ConsoleSpanExporter printed (pretty-printed, one after the other)."""
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while (start := text.find("{", index)) >= 0:
        try:
            value, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        objects.append(value)
    return objects


def run(extra_env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The app under opentelemetry-instrument, run from its own directory as a deployment would
    be (opentelemetry-instrument puts the working directory on sys.path)."""
    env = {
        "OTEL_SERVICE_NAME": "zero-code-test",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "django",
        "SQREEN_EXPORTER": "console",
        **extra_env,
    }
    return run_python([str(APP)], cwd, env, executable=str(INSTRUMENT))


def event_names(span: dict[str, Any]) -> list[str]:
    return [event["name"] for event in span["events"]]


def our_lines(stderr: str) -> list[str]:
    """The console exporter's lines: one per security event."""
    return [line for line in stderr.splitlines() if " users.login.failure " in line or " login.page " in line]


def test_opentelemetry_instrument_enables_the_sdk_and_ships_unsampled_events(tmp_path: Path) -> None:
    completed = run({}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = our_lines(completed.stderr)
    assert len(lines) == 4, completed.stderr
    for user in ("sampled", "unsampled"):
        (failure,) = [line for line in lines if " users.login.failure " in line and f"['{user}']" in line]
        assert f"user={{username='{user}'}}" in failure
        assert "POST /login" in failure
        (page,) = [line for line in lines if " login.page " in line and f"['{user}']" in line]
        assert "props={user_known=False}" in page
        # SqreenMiddleware was put around Flask by our instrumentor: the proxy header is resolved.
        assert (" ip=203.0.114.7 " in failure) is (user == "unsampled")
    # The app's own pipeline kept its sampling decision: only the sampled request.
    app = [s for s in json_objects(completed.stdout) if s.get("kind") == "SpanKind.SERVER"]
    assert [s["attributes"]["http.target"] for s in app] == ["/login?user=sampled"]
    assert event_names(app[0]) == ["users.login.failure", "login.page"]


def test_sqreen_disable_turns_zero_code_off(tmp_path: Path) -> None:
    completed = run({"SQREEN_DISABLE": "1"}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert our_lines(completed.stderr) == []
    (app_span,) = [s for s in json_objects(completed.stdout) if s.get("kind") == "SpanKind.SERVER"]
    assert app_span["events"] == []


def test_without_the_framework_instrumentation_events_keep_their_request_and_a_warning_says_why(
    tmp_path: Path,
) -> None:
    """``pip install sqreen-otel`` alone: no opentelemetry-instrumentation-flask, so no request
    span. Our instrumentor still puts SqreenMiddleware around Flask: the events keep the
    request's fields, and one warning names the fix."""
    completed = run({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "flask,django"}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.count("Requests have no OpenTelemetry HTTP server span") == 1
    assert "pip install 'sqreen-otel[flask]'" in completed.stderr
    failures = [line for line in our_lines(completed.stderr) if " users.login.failure " in line]
    assert len(failures) == 2
    assert all("POST /login" in line for line in failures)
    assert any(" ip=203.0.114.7 " in line for line in failures)  # the proxy header, resolved


def test_a_failed_auto_configuration_is_reported_as_what_it_is(tmp_path: Path) -> None:
    """A trace exporter that is not installed (as OTLP over gRPC, the SDK's default, often is):
    the SDK's configuration fails, nothing records, and we say so (not "the sampler dropped
    it"). Without a distro, our hook ran the SDK's configurator and reports its failure; with
    one, opentelemetry-instrument reports the distro's, and we point to that report."""
    completed = run({"OTEL_TRACES_EXPORTER": "no_such_exporter"}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    if DISTRO:
        assert "Failed to auto initialize OpenTelemetry" in completed.stderr
    else:
        assert "OpenTelemetry SDK auto-configuration from OTEL_* failed (RuntimeError:" in completed.stderr
    assert "no OpenTelemetry SDK tracer provider is set up" in completed.stderr  # at the first event
    for misleading in ("sampler dropped", "Internal error", "no OpenTelemetry HTTP server span"):
        assert misleading not in completed.stderr


def test_otel_sdk_disabled_turns_everything_off_without_a_warning(tmp_path: Path) -> None:
    completed = run({"OTEL_SDK_DISABLED": "true"}, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert our_lines(completed.stderr) == []
    assert "sqreen_otel" not in completed.stderr.replace("sqreen_otel records nothing", "")
    assert "WARNING" not in completed.stderr and "ERROR" not in completed.stderr
