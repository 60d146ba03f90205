"""A Flask app for the security-response tests, set up the documented way at import (werkzeug
test client, or gunicorn with several workers). ``SQREEN_*`` settings come from the
environment. Each view appends what it did to ``$SIDE_EFFECTS`` (one line per effect, with
the worker's pid), so a test can tell whether a view ran, and in which process.

* ``POST /transfer``: the side effect an IP block must prevent.
* ``POST /login?user=U``: identifies U, then records ``after-identify U``: a user block must
  stop the view at identify.
* ``POST /signin?user=U&ok=1&sleep=S``: a login (``auth_track``), failed unless ``ok=1``.
* ``GET /health``: a health check (passlisted in some tests); ``GET /health/state?ip=I&sleep=S``
  answers, after S seconds, this worker's pid and whether ``is_blocked(ip=I)`` (or, with
  ``username=U`` instead of ``ip``, ``is_blocked({"username": U})``) holds in it
  (slow concurrent calls reach every worker: a test checks each worker's view of the actions).
* ``GET /blocked?user=U``: ``is_blocked()`` for the request's IP, or for user U.
"""

from __future__ import annotations

import json
import os
import time

import flask
from _flask_instrumented import instrument
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import sqreen_otel

provider = TracerProvider()
trace.set_tracer_provider(provider)
sqreen_otel.configure()

app = flask.Flask("sqreen_responses")


def effect(what: str) -> None:
    with open(os.environ["SIDE_EFFECTS"], "a", encoding="utf-8") as handle:
        handle.write(f"{what} {os.getpid()}\n")


@app.route("/transfer", methods=["POST"])
def transfer() -> flask.Response:
    effect("transfer")
    return flask.Response("done", headers={"X-Worker": str(os.getpid())})


@app.route("/login", methods=["POST"])
def login() -> flask.Response:
    user = flask.request.args.get("user", "ann")
    try:
        sqreen_otel.identify({"email": user})
    except Exception:  # an app's broad handler: RequestBlocked is not an Exception, it passes
        effect("swallowed")
        raise
    effect(f"after-identify {user}")
    return flask.Response("welcome", headers={"X-Worker": str(os.getpid())})


@app.route("/signin", methods=["POST"])
def signin() -> flask.Response:
    """A login form: ``?user=U&ok=1`` succeeds, anything else fails (``auth_track``)."""
    time.sleep(float(flask.request.args.get("sleep", "0")))  # slow calls spread over the workers
    user = flask.request.args.get("user", "ann")
    success = flask.request.args.get("ok") == "1"
    sqreen_otel.auth_track(success, username=user)
    effect(f"signin {user} {'ok' if success else 'failed'}")
    return flask.Response("welcome" if success else "denied", status=200 if success else 401)


@app.route("/health")
def health() -> str:
    effect("health")
    return "ok"


@app.route("/health/state")
def state() -> flask.Response:
    time.sleep(float(flask.request.args.get("sleep", "0")))
    ip, username = flask.request.args.get("ip"), flask.request.args.get("username")
    blocked = (
        sqreen_otel.is_blocked({"username": username}) if username else sqreen_otel.is_blocked(ip=ip or "")
    )
    body = json.dumps({"pid": os.getpid(), "blocked": blocked})
    return flask.Response(body, content_type="application/json")


@app.route("/blocked")
def blocked() -> str:
    user = flask.request.args.get("user")
    return str(sqreen_otel.is_blocked({"email": user} if user else None))


instrument(app)
