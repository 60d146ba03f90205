"""Every snippet of README.md and docs/*.md, as written.

Each ```python block runs in a fresh process, in an empty folder, with its own event store and
no network. A block that stands alone runs alone. A fragment names, in an HTML comment on the
line before its fence (invisible on a rendered page), the context it is written for:

    <!-- snippet: provider flask -->

Each part of the context (``CONTEXTS``) puts code before the snippet (what the reader already
has: an app, a tracer provider, a request in progress) and after it (what proves the snippet
worked: a request through the app, events in the store with the client IP resolved). The
snippet's own text is never changed. ``<!-- snippet: skip <reason> -->`` would leave a block
out, with its reason; none needs it today.

Every ``sqreen-otel ...`` command line of a shell block (``$ `` prompts and comments allowed)
runs against a store with events and must succeed; a ``$`` transcript's table header must be
the one the command prints.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _instrumentations import needs
from _support import run_python
from test_local_store import store_with_events

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.S | re.M)
MARKER = re.compile(r"<!-- snippet: (?P<spec>.*?) -->\s*\Z")


@dataclass(frozen=True)
class Part:
    before: str
    after: str = ""
    needs: str | None = None  # a framework instrumentation


# What the reader has before a fragment, and what proves it worked.
CONTEXTS = {
    "provider": Part(
        """
from opentelemetry import trace as _trace
from opentelemetry.sdk.trace import TracerProvider as _TracerProvider

provider = _TracerProvider()
_trace.set_tracer_provider(provider)  # the app's usual OpenTelemetry set-up
"""
    ),
    "flask": Part(
        """
import flask as _flask

import sqreen_otel as _sqreen

app = _flask.Flask("docs_app")


@app.post("/login")
def _login() -> str:
    _sqreen.auth_track(False, username="ann")
    return "ok"
""",
        "_login_through(app)\n",
        needs="flask",
    ),
    "wsgi": Part(
        """
import sqreen_otel as _sqreen


def app(environ, start_response):
    _sqreen.auth_track(False, username="ann")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
""",
        "_login_through(app)\n",
    ),
    "django": Part(
        """
from django.conf import settings as _settings
from django.http import HttpResponse as _HttpResponse

import sqreen_otel as _sqreen

_settings.configure(  # what DJANGO_SETTINGS_MODULE would name
    SECRET_KEY="docs-only", ROOT_URLCONF="__main__", ALLOWED_HOSTS=["*"], MIDDLEWARE=[], INSTALLED_APPS=[]
)


def _login(request):
    _sqreen.auth_track(False, username="ann")
    return _HttpResponse("ok")


from django.urls import path as _path  # noqa: E402 - once settings are configured

urlpatterns = [_path("login", _login)]
""",
        "_login_through(application)\n",
        needs="django",
    ),
    "request": Part(
        """
import concurrent.futures
import contextvars
import datetime

import opentelemetry.context
from opentelemetry.sdk.trace import TracerProvider as _TracerProvider
from opentelemetry.trace import SpanKind as _SpanKind

import sqreen_otel

_provider = _TracerProvider()
sqreen_otel.configure(tracer_provider=_provider)
props, when = {"format": "csv"}, datetime.datetime.now(datetime.timezone.utc)
uid, email = "u-1", "ann@example.com"
executor = concurrent.futures.ThreadPoolExecutor(1)


def work():
    sqreen_otel.track("work.done")


_request = _provider.get_tracer("docs").start_as_current_span("POST /login", kind=_SpanKind.SERVER)
_request.__enter__()  # the snippet runs inside a request
""",
        """
executor.shutdown(wait=True)
_request.__exit__(None, None, None)
_check_stored(None, None)
""",
    ),
}

# Before every snippet, for the parts' checks: what was stored, read back with the Event
# Explorer; a login through a WSGI app from behind a proxy.
CHECK = """
import io as _io
import json as _json

from werkzeug.test import Client as _Client

import sqreen_otel as _sqreen
from sqreen_otel._cli.events import main as _explorer


def _check_stored(names, client_ip):
    assert _sqreen.flush(10), "not flushed"
    out = _io.StringIO()
    assert _explorer(["events", "--json"], out=out) == 0
    events = [_json.loads(line) for line in out.getvalue().splitlines()]
    assert events, "no event stored"
    if names is not None:
        assert [event["name"] for event in events] == names, events
    if client_ip is not None:
        assert {event["client_ip"] for event in events} == {client_ip}, events
    assert _sqreen.stats().get("internal_errors", 0) == 0, _sqreen.stats()


def _login_through(wsgi_app):
    client_ip = "203.0.114.7"  # behind a proxy: SqreenMiddleware resolves it
    headers = {"X-Forwarded-For": client_ip + ", 10.0.0.2"}
    response = _Client(wsgi_app).post("/login", headers=headers, buffered=True)  # the response closed
    assert response.status_code == 200, response.status_code
    _check_stored(["users.login.failure"], client_ip)
"""


@dataclass(frozen=True)
class Snippet:
    document: Path
    line: int
    lang: str
    body: str
    spec: str | None

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for fence in FENCE.finditer(text):
            marker = MARKER.search(text[: fence.start()])
            line = text.count("\n", 0, fence.start()) + 1
            spec = marker.group("spec").strip() if marker else None
            found.append(Snippet(document, line, fence.group("lang"), fence.group("body"), spec))
    return found


def python_cases() -> list[object]:
    cases: list[object] = []
    for snippet in snippets():
        if snippet.lang != "python":
            continue
        spec = snippet.spec or ""
        if spec.startswith("skip"):
            reason = spec.removeprefix("skip").strip()
            assert reason, f"{snippet.id}: a skipped snippet says why"
            cases.append(pytest.param(snippet, marks=pytest.mark.skip(reason=reason), id=snippet.id))
            continue
        parts = [CONTEXTS[name] for name in spec.split()]
        marks = [needs(part.needs) for part in parts if part.needs]
        cases.append(pytest.param(snippet, marks=marks, id=snippet.id))
    return cases


def program(snippet: Snippet) -> str:
    parts = [CONTEXTS[name] for name in (snippet.spec or "").split()]
    before = "".join(part.before for part in parts)
    after = "".join(part.after for part in reversed(parts))
    return f"{CHECK}\n{before}\n# --- {snippet.id}, as written ---\n{snippet.body}\n# ---\n{after}"


def test_the_documents_have_snippets_and_every_marker_names_known_parts() -> None:
    found = snippets()
    assert sum(snippet.lang == "python" for snippet in found) >= 8
    for snippet in found:
        for name in (snippet.spec or "").split():
            assert snippet.spec is not None
            assert snippet.spec.startswith("skip") or name in CONTEXTS, f"{snippet.id}: unknown part {name}"


@pytest.mark.parametrize("snippet", python_cases())
def test_python_snippet_runs_as_written(snippet: Snippet, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(program(snippet))
    completed = run_python([str(script)], tmp_path, {"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert completed.returncode == 0, f"{snippet.id}\n{completed.stdout}\n{completed.stderr}"


def command_lines() -> list[tuple[str, list[str], list[str]]]:
    """(where, argv, the transcript's next line if it is one) of each documented command."""
    found = []
    for snippet in snippets():
        if snippet.lang not in ("", "bash", "sh", "shell", "console"):
            continue
        lines = snippet.body.splitlines()
        for index, line in enumerate(lines):
            prompt = line.startswith("$ ")
            if line.removeprefix("$ ").startswith("sqreen-otel "):
                argv = shlex.split(line.removeprefix("$ "), comments=True)
                shown = lines[index + 1].split() if prompt and index + 1 < len(lines) else []
                found.append((f"{snippet.id} +{index}", argv, shown))
    return found


def test_every_documented_command_runs(tmp_path: Path) -> None:
    commands = command_lines()
    assert len(commands) >= 9
    store = store_with_events(tmp_path)
    script = Path(sys.executable).with_name("sqreen-otel")
    for where, argv, header in commands:
        completed = subprocess.run(
            [str(script), *argv[1:]],
            env={"SQREEN_LOCAL_STORE": store, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, f"{where}: {argv}\n{completed.stderr}"
        if header:
            assert completed.stdout.splitlines()[0].split() == header, where
