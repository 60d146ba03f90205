"""The responses a security action gives: a block page or a redirect, as a WSGI response.

* Block: ``SQREEN_BLOCK_STATUS`` (403), a neutral page in HTML or JSON, chosen from the
  request's ``Accept`` header (q-values honoured; HTML unless JSON is preferred). The pages
  reflect nothing of the request: no path, no IP, no header; operators may replace them with
  files of their own (``SQREEN_BLOCK_HTML_FILE``, ``SQREEN_BLOCK_JSON_FILE``), served as they
  are.
* Redirect: ``303 See Other`` to the action's URL (absolute http(s), validated with the
  action), with a tiny body.
* Both: ``Cache-Control: no-store`` (a block must not be cached for someone else),
  ``X-Content-Type-Options: nosniff``, a strict ``Content-Security-Policy``; valid under
  werkzeug's ``LintMiddleware``. A ``start_response`` already called by the app (a user block
  raised after it) is called again with the exception, as WSGI allows before the body starts.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEFAULT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access denied</title></head>
<body><h1>Access denied</h1><p>This request was blocked by a security rule.</p></body></html>
"""
DEFAULT_JSON = (
    '{"status":%d,"error":"Access denied","message":"This request was blocked by a security rule."}'
)
_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
]


@dataclass(frozen=True)
class BlockPages:
    """The block response's status and bodies (settings, read once)."""

    status: int = 403
    html_body: bytes = DEFAULT_HTML.encode()
    json_body: bytes | None = None  # None: the default, with the status in it

    def json(self) -> bytes:
        return self.json_body if self.json_body is not None else (DEFAULT_JSON % self.status).encode()


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Blocked"


def _specificity(kind: str, media: str) -> int:
    """How specifically ``media`` names ``kind`` (0: not at all)."""
    if media == "*/*":
        return 1
    if kind == "json":
        return (
            3
            if media == "application/json" or media.endswith("+json")
            else 2
            if media == "application/*"
            else 0
        )
    return 3 if media in ("text/html", "application/xhtml+xml") else 2 if media == "text/*" else 0


def prefers_json(accept: str | None) -> bool:
    """Whether ``Accept`` ranks JSON above HTML: each kind takes the q-value of its most
    specific matching range (RFC 9110); a tie goes to the range listed first, and HTML is the
    default."""
    if not accept:
        return False
    ranks: dict[str, tuple[int, float, int]] = {}  # kind -> (specificity, quality, position)
    for position, item in enumerate(accept[:2048].split(",")[:64]):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    quality = 0.0
        for kind in ("json", "html"):
            specificity = _specificity(kind, media.lower())
            if specificity and (kind not in ranks or specificity > ranks[kind][0]):
                ranks[kind] = (specificity, quality, position)
    _, json_q, json_at = ranks.get("json", (0, 0.0, 0))
    _, html_q, html_at = ranks.get("html", (0, 0.0, 0))
    if json_q <= 0:
        return False
    return json_q > html_q or (json_q == html_q and "html" in ranks and json_at < html_at)


def _start(start_response: StartResponse, status: str, headers: list[tuple[str, str]], started: bool) -> None:
    if started:
        start_response(status, headers, sys.exc_info())
    else:
        start_response(status, headers)


def block_response(
    pages: BlockPages, environ: WSGIEnvironment, start_response: StartResponse, *, started: bool = False
) -> Iterable[bytes]:
    """The block page for this request (HTML or JSON by ``Accept``; HEAD gets no body)."""
    as_json = prefers_json(environ.get("HTTP_ACCEPT"))
    body = pages.json() if as_json else pages.html_body
    content_type = "application/json" if as_json else "text/html; charset=utf-8"
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *_SECURITY_HEADERS]
    _start(start_response, _status_line(pages.status), headers, started)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def redirect_response(
    url: str, environ: WSGIEnvironment, start_response: StartResponse, *, started: bool = False
) -> Iterable[bytes]:
    """``303 See Other`` to ``url`` (validated with its action: absolute http(s), ASCII)."""
    link = html.escape(url, quote=True)
    body = f'<!doctype html><title>See Other</title><a href="{link}">Continue</a>\n'.encode()
    headers = [
        ("Location", url),
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *_SECURITY_HEADERS,
    ]
    _start(start_response, "303 See Other", headers, started)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
