"""``sqreen-otel ui``: the web Event Explorer, served from this package on 127.0.0.1.

The page and its assets are static files shipped in the package (no CDN, no network at run
time); the data comes from a JSON API that needs this run's token (printed at start, like
Jupyter's; carried in the URL fragment, which browsers never send to servers nor put in the
``Referer``, then kept in the tab's ``sessionStorage``) in an ``Authorization`` header. That
header is also the CSRF defence: a cross-site form or image cannot set it, and a cross-origin
``fetch`` that does is preflighted, which this server never allows. Requests whose ``Host`` is
not this server's address are refused (DNS rebinding), and state-changing requests must be JSON
from this origin. Every response forbids framing, sniffing and any script but ours (CSP).
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import socketserver
import urllib.parse
from importlib import resources
from typing import Any, Final

from sqreen_otel._ui.api import Api, ApiError

MAX_BODY: Final = 512 * 1024
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
_STATIC: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
_log = logging.getLogger("sqreen_otel.ui")


def asset(name: str) -> bytes:
    return resources.files("sqreen_otel._ui").joinpath("static").joinpath(name).read_bytes()


class ExplorerServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api, token: str) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.token = token
        host, port = self.server_address[:2]
        self.origin = f"http://{_host_text(str(host))}:{port}"
        self.hosts = {f"{name}:{port}" for name in (_host_text(str(host)), "localhost", "127.0.0.1", "[::1]")}

    @property
    def url(self) -> str:
        """The address to open: the token in the fragment."""
        return f"{self.origin}/#token={self.token}"


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ExplorerServer
    server_version = "sqreen-otel"
    sys_version = ""
    timeout = 30  # seconds a connection may idle or drip (a slow client never holds a thread)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: request lines carry query values (attacker data, operator searches)."""

    # -- dispatch -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        try:
            if self.headers.get("Host", "") not in self.server.hosts:
                self._json(421, {"error": "unknown host"})  # DNS rebinding: another name for us
                return
            target = urllib.parse.urlsplit(self.path)
            if target.path in _STATIC and method in ("GET", "HEAD"):
                name, kind = _STATIC[target.path]
                self._send(200, asset(name), kind, head=method == "HEAD", cache="no-cache")
                return
            if not target.path.startswith("/api/"):
                self._json(404, {"error": "not found"})
                return
            if not self._authorized():
                self._json(401, {"error": "this run's token is missing or wrong"})
                return
            params = {key: values[-1] for key, values in urllib.parse.parse_qs(target.query).items()}
            if method == "POST":
                self._json(200, self._post(target.path))
            else:
                self._json(200, self._get(target.path, params))
        except ApiError as error:
            self._json(error.status, {"error": str(error)})
        except Exception:  # noqa: BLE001 - never a traceback (nor data) in a response
            _log.exception("sqreen_otel ui: request failed")
            self._json(500, {"error": "internal error"})

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    def _get(self, path: str, params: dict[str, str]) -> Any:
        api = self.server.api
        routes = {
            "/api/meta": api.meta,
            "/api/timeline": api.timeline,
            "/api/events": api.events,
            "/api/event": api.event,
            "/api/groups": api.groups,
            "/api/firings": api.firings,
            "/api/actions": api.actions,
        }
        if path not in routes:
            raise ApiError(404, "not found")
        return routes[path](params)

    def _post(self, path: str) -> Any:
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host', '')}":  # Host: checked
            raise ApiError(403, "cross-origin request refused")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "JSON only")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "Content-Length: a number") from None
        if not 0 < length <= MAX_BODY:
            raise ApiError(413, "a JSON body of at most 512 KiB")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            raise ApiError(400, "not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON object")
        api = self.server.api
        if path == "/api/playbooks/test":
            return api.dry_run(body)
        writes = {"/api/actions": api.add_action, "/api/actions/remove": api.remove_action}
        if path not in writes:
            raise ApiError(404, "not found")
        if api.context.read_only:
            raise ApiError(403, "read-only: the action store is not writable here")
        return writes[path](body)

    # -- responses ------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=True, allow_nan=False, default=str).encode()
        self._send(status, body, "application/json", cache="no-store")

    def _send(self, status: int, body: bytes, kind: str, *, head: bool = False, cache: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in _HEADERS:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)
