"""A Flask app with no OpenTelemetry code at all, run by test_zero_code.py under
``opentelemetry-instrument``: only the sqreen_otel calls an app author would add."""

from __future__ import annotations

import flask

import sqreen_otel

app = flask.Flask("zero_code")


@app.route("/login", methods=["POST"])
def login() -> str:
    user = flask.request.args.get("user", "")
    sqreen_otel.auth_track(False, username=user)
    sqreen_otel.from_context().track_event("login.page").with_properties({"user_known": False})
    return "ok"


if __name__ == "__main__":
    client = app.test_client()
    client.post("/login?user=sampled")
    client.post(
        "/login?user=unsampled",
        headers={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            "X-Forwarded-For": "203.0.114.7",  # behind a proxy: resolved with no code change
        },
    )
    # Normal interpreter exit: the tracer provider's exit hook flushes our pipeline.
