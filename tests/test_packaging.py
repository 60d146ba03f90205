"""What the installed distribution offers: the command's version, ``python -m sqreen_otel``, the
metadata an index page shows (licence, links), and a core that works without its extras."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from contextlib import closing
from importlib.metadata import distribution
from pathlib import Path

import pytest
from _support import Otel, run_python
from opentelemetry.trace import SpanKind

import sqreen_otel
from sqreen_otel.exporters import OTLP_MISSING

SCRIPT = Path(sys.executable).with_name("sqreen-otel")


def test_the_command_tells_its_version(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(SCRIPT), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert (completed.returncode, completed.stdout) == (0, f"sqreen-otel {sqreen_otel.__version__}\n")


def test_python_m_runs_the_same_command(tmp_path: Path) -> None:
    version = run_python(["-m", "sqreen_otel", "--version"], tmp_path)
    assert (version.returncode, version.stdout) == (0, f"sqreen-otel {sqreen_otel.__version__}\n")
    missing = run_python(["-m", "sqreen_otel", "events", "--store", str(tmp_path / "none.db")], tmp_path)
    assert missing.returncode == 1
    assert "no event store" in missing.stderr
    bare = run_python(["-m", "sqreen_otel"], tmp_path)
    assert bare.returncode == 2
    assert bare.stderr.startswith("sqreen-otel: error:")


def test_metadata_names_the_licence_and_the_project_links() -> None:
    dist = distribution("sqreen-otel")
    assert dist.version == sqreen_otel.__version__
    metadata = dist.metadata
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    license_text = next(f for f in dist.files or [] if f.name == "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    links = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert set(links) == {"Homepage", "Documentation", "Source", "Issues"}
    assert all(url.startswith("https://github.com/sqreen-otel/sqreen-otel") for url in links.values())


def test_the_package_under_test_is_the_installed_one() -> None:
    """Never the sources beside the tests (a repository or an unpacked sdist): they would shadow
    the installed package, and the tests would prove nothing about it."""
    beside = Path(__file__).parents[1] / "sqreen_otel" / "__init__.py"
    assert Path(sqreen_otel.__file__ or "") != beside


def test_the_otlp_exporter_without_its_extra_says_so_and_the_rest_works(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, sqreen_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """``SQREEN_EXPORTER=otlp`` needs ``sqreen-otel[otlp]``. Without it (its package made
    unimportable here; compat.py checks a real venv without it), configure() still works and
    the local store still gets the events."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    store = tmp_path / "events.db"
    sqreen_otel.configure(tracer_provider=otel.provider, exporter=["local", "otlp"], local_store=str(store))
    with otel.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
        sqreen_otel.track("still.stored")
    assert sqreen_otel.flush(10)
    assert [r.getMessage() for r in sqreen_logs.records if r.levelno >= logging.ERROR] == [OTLP_MISSING]
    with closing(sqlite3.connect(store)) as db:
        names = db.execute("SELECT name FROM events").fetchall()
    assert names == [("still.stored",)]
