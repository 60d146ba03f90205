"""Run by test_ui.py: the demo shop (examples/) on a real WSGI server on 127.0.0.1, with the
demo's traffic and one hostile signup already sent. Prints its port, then how many events the
store holds once flushed, then serves until terminated. Settings come from SQREEN_*."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

from demo import NullExporter, QuietHandler, post, send_traffic  # noqa: E402 - examples/ first
from flask_app import create_app, setup_tracing  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import sqreen_otel  # noqa: E402

HOSTILE_EMAIL = "<script>window.__pwned=1</script>\x1b[31m\u202eevil@example.com"


def main() -> None:
    setup_tracing(NullExporter())
    server = make_server("127.0.0.1", 0, create_app(), threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"port {server.server_port}", flush=True)
    send_traffic(server.server_port)
    post(server.server_port, "/signup", "198.51.100.23", {"email": HOSTILE_EMAIL, "password": "pw"})
    sqreen_otel.flush(10.0)
    print(f"stored {sqreen_otel.stats().get('events_stored', 0)}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
