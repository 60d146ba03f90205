"""Default properties under every OTEL_SEMCONV_STABILITY_OPT_IN mode, per framework."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _instrumentations import available
from _support import run_python

PROBE = Path(__file__).with_name("semconv_probe.py")
EXPECTED_CONTEXT = {
    "client_ip": "203.0.114.7",
    "user_agent": "probe/1",
    "method": "POST",
    "path": "/login",
    "parameters": {"user": ["ann"], "next": ["/"]},
}
# Keys that prove which conventions the instrumentation used in each mode.
OLD_KEYS = {"http.method", "http.target"}
NEW_KEYS = {"http.request.method", "url.path"}


@pytest.mark.parametrize(
    ("mode", "old", "new"), [("", True, False), ("http", False, True), ("http/dup", True, True)]
)
def test_request_context_in_every_semconv_mode(mode: str, old: bool, new: bool, tmp_path: Path) -> None:
    completed = run_python([str(PROBE)], tmp_path, {"OTEL_SEMCONV_STABILITY_OPT_IN": mode})
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert set(report) == {"wsgi", *available(["flask", "django"])}
    for framework, result in report.items():
        keys = set(result["keys"])
        for expected_keys, present in ((OLD_KEYS, old), (NEW_KEYS, new)):
            assert (keys & expected_keys) == (expected_keys if present else set()), framework
        context = {k: v for k, v in result["context"].items() if k in EXPECTED_CONTEXT}
        assert context == EXPECTED_CONTEXT, framework
        assert result["events"][0] == "users.login.failure"
