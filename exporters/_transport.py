"""POSTing batches over HTTP(S), shared by the ``http`` and ``otlp`` exporters.

* One kept-alive connection per exporter and process (a forked child opens its own); a
  connection the server closed while idle is replaced and the request sent once more.
* TLS is verified (the system trust store, or the given CA file); redirects are never
  followed: a 3xx is reported as the refusal it is.
* One request takes at most ``timeout`` seconds in all, however slowly the server answers
  (a watchdog shuts the socket down at the deadline), so ``max_seconds`` bounds a ``post``.
  At shutdown the caller's deadline (``export_result.export_deadline``) shortens it. Where no
  watchdog thread can start (Python 3.12+ once atexit runs) each socket operation is bounded
  by the time left instead: a server that hangs is given up at the deadline.
* The response body is read up to 64 KiB and no further: a destination answering with a huge
  body costs nothing (the connection is then dropped rather than drained).
* The status decides the outcome (``export_result``): 2xx delivered; 408, 429, 5xx retry (honouring
  ``Retry-After``); 413 too large (the batch is split); other 4xx bad data (split to isolate
  the events at fault); 3xx, 401, 403, 404, 405 refused (kept, backed off, logged as errors).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping

from sqreen_otel._shipping.event_model import EventExporter
from sqreen_otel._shipping.export_result import SUCCESS, ExportOutcome, ExportStatus, time_left

MAX_RESPONSE_BYTES = 64 * 1024
_RETRYABLE = frozenset({408, 429})
_REFUSED = frozenset({401, 403, 404, 405, 407})


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


def outcome_of(status: int, retry_after_header: str | None) -> ExportOutcome:
    """The outcome an HTTP status means for a batch (see the module docstring)."""
    if 200 <= status < 300:
        return SUCCESS
    detail = f"HTTP {status}"
    if status in _RETRYABLE or status >= 500:
        return ExportOutcome(ExportStatus.RETRY, retry_after(retry_after_header), detail)
    if status == 413:
        return ExportOutcome(ExportStatus.PERMANENT, detail=detail, too_large=True)
    if 400 <= status < 500 and status not in _REFUSED:
        return ExportOutcome(ExportStatus.PERMANENT, detail=detail)
    return ExportOutcome(ExportStatus.REFUSED, retry_after(retry_after_header), detail)


class HttpTransport:
    """POSTs bodies to one URL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = dict(headers)
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not supported; use headers")
        if not 0 < timeout <= 300:  # NaN included
            raise ValueError("the timeout must be a number of seconds in (0, 300]")
        self.timeout = timeout
        self._context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._connection: http.client.HTTPConnection | None = None
        self._pid = os.getpid()

    def _connect(self) -> http.client.HTTPConnection:
        if self._pid != os.getpid():  # a forked child never shares the parent's socket
            self._connection = None
            self._pid = os.getpid()
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=self._context
                )
            else:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return self._connection

    @property
    def max_seconds(self) -> float:
        """The longest a ``post`` takes (a second attempt on a new connection included)."""
        return 2 * self.timeout + 1.0

    @property
    def identity(self) -> str:
        """The URL and the headers sent (credentials included), for ``EventExporter.destination``."""
        return "\n".join(
            [self.url, *(f"{key.lower()}: {value}" for key, value in sorted(self._headers.items()))]
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def post(self, body: bytes, headers: Mapping[str, str] | None = None) -> ExportOutcome:
        """POST ``body``; the outcome of the answer (a network failure is retryable)."""
        all_headers = {**self._headers, **(headers or {}), "Content-Length": str(len(body))}
        for attempt in (0, 1):
            seconds = time_left(self.timeout)
            if seconds <= 0:
                return ExportOutcome(ExportStatus.RETRY, detail="no time left before shutdown")
            reused = self._connection is not None
            connection = self._connect()
            watchdog = _Watchdog(connection, seconds, self.timeout)
            try:
                connection.request("POST", self._target, body=body, headers=all_headers)
                response = connection.getresponse()
                return self._answer(response)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                self.close()
                if reused and attempt == 0 and not watchdog.fired:
                    continue  # the server closed the idle connection: once more on a new one
                return ExportOutcome(ExportStatus.RETRY, detail=watchdog.detail(error))
            except (OSError, http.client.HTTPException) as error:
                self.close()
                return ExportOutcome(ExportStatus.RETRY, detail=watchdog.detail(error))
            finally:
                watchdog.cancel()
        return ExportOutcome(ExportStatus.RETRY, detail="connection closed")

    def _answer(self, response: http.client.HTTPResponse) -> ExportOutcome:
        outcome = outcome_of(response.status, response.getheader("Retry-After"))
        try:
            response.read(MAX_RESPONSE_BYTES)
            complete = response.isclosed()
        except (OSError, http.client.HTTPException):
            complete = False  # the answer's status is known: the body does not matter
        if not complete or response.will_close:
            self.close()  # never drain a huge body; the next batch opens a new connection
        return outcome


class HttpEventExporter(EventExporter):
    """An event exporter that POSTs through one ``HttpTransport`` (set with ``_use``)."""

    _transport: HttpTransport

    def _use(self, transport: HttpTransport) -> None:
        self._transport = transport
        self.max_export_seconds = transport.max_seconds

    @property
    def destination(self) -> str:
        return self._transport.identity

    def shutdown(self) -> None:
        self._transport.close()


class _Watchdog:
    """Shuts a connection's socket down once ``seconds`` have passed: the socket timeout bounds
    each read, not a whole exchange a server could drip out one byte at a time.

    Where no thread can start (Python 3.12+ once atexit runs), the socket timeout becomes
    ``seconds`` for the exchange (connect included), then ``usual`` again: a hung server is
    given up in time; one that drips its answer is bounded per read only.
    """

    def __init__(self, connection: http.client.HTTPConnection, seconds: float, usual: float) -> None:
        self.fired = False
        self._connection = connection
        self._usual: float | None = None
        self._timer: threading.Timer | None = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        try:
            self._timer.start()
        except RuntimeError:
            self._timer = None
            self._usual = usual
            self._set_timeout(seconds)

    def _set_timeout(self, seconds: float) -> None:
        self._connection.timeout = seconds  # a connection to open
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(seconds)  # an open one

    def _fire(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._usual is not None:
            self._set_timeout(self._usual)  # a kept-alive connection's next request

    def detail(self, error: BaseException) -> str:
        return "request timed out" if self.fired else type(error).__name__
