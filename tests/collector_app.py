"""A Flask app with no OpenTelemetry code, run by test_event_signal.py under
``opentelemetry-instrument`` with the app's traces and logs going to an OTLP receiver: each
request tracks a login failure (with secrets in its properties) and identifies a user."""

from __future__ import annotations

import sys

import flask

import sqreen_otel

app = flask.Flask("collector_app")


@app.route("/login", methods=["POST"])
def login() -> str:
    number = flask.request.args.get("n", "")
    sqreen_otel.identify({"email": f"user{number}@example.com"}, traits={"api_token": "tok-hunter2"})
    sqreen_otel.auth_track(False, username=f"user{number}", password="hunter2")
    sqreen_otel.track("login.attempt", properties={"n": number, "card": "4111 1111 1111 1111"})
    return "ok"


if __name__ == "__main__":
    client = app.test_client()
    for number in range(int(sys.argv[1])):
        client.post(f"/login?n={number}")
    print("done", flush=True)
    # Normal interpreter exit: the providers' exit hooks flush the app's pipelines and ours.
