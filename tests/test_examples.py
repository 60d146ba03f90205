"""`make demo` keeps working: the example shop, served and driven end to end."""

from __future__ import annotations

from pathlib import Path

from _support import run_python

DEMO = Path(__file__).parents[1] / "examples" / "demo.py"


def test_demo_prints_every_tracked_event_with_its_request(tmp_path: Path) -> None:
    completed = run_python([str(DEMO)], tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    failures = [line for line in lines if " users.login.failure " in line]
    assert len(failures) == 5
    assert all("ip=192.0.2.66 POST /login" in line for line in failures)
    assert sum(" users.signup " in line for line in lines) == 2
    (purchase,) = [line for line in lines if " payment.purchase " in line]
    assert "user={email='ann@example.com'}" in purchase
    assert "props={item='book', amount=12.5, currency='EUR'}" in purchase
    assert "'events_exported': 14" in completed.stdout
