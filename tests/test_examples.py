"""`make demo` keeps working: the example shop, served and driven end to end."""

from __future__ import annotations

from pathlib import Path

from _instrumentations import needs
from _support import run_python

pytestmark = needs("flask")  # the demo shop is a Flask app

DEMO = Path(__file__).parents[1] / "examples" / "demo.py"
PLANTED = ["123456-0", "123456-5", "guess", "4111 1111 1111 1111", "5500-0000-0000-0004", "correct horse"]


def test_demo_stores_scrubbed_events_and_explores_them(tmp_path: Path) -> None:
    completed = run_python([str(DEMO)], tmp_path)
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout
    lines = output.splitlines()
    assert "flushed: True" in output
    assert "'events_stored': 18" in output
    assert sum("users.login.failure" in line for line in lines) >= 7
    (by_ip,) = [
        i
        for i, line in enumerate(lines)
        if line.startswith("$ sqreen-otel events --name users.login.failure --group-by ip")
    ]
    assert lines[by_ip + 3].split()[:2] == ["192.0.2.66", "6"]  # the credential-stuffing source, first
    assert any(line.startswith("<Redacted by Sqreen>  7") for line in lines)  # every planted password
    for secret in PLANTED:
        assert secret not in output
    assert "make ui" in lines[-1]  # how to open the same events in the web Event Explorer
