"""A one-shot loopback listener for the authorization response (RFC 8252 §7.3).

Binds ``127.0.0.1`` (never a wildcard address) on an ephemeral port, serves
until one request reaches the redirect path or the deadline passes, answers it
with a small page, and closes. Nothing it receives is logged: the query string
holds the authorization code.
"""

from __future__ import annotations

import html
import logging
import socketserver
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

#: Seconds a browser connection may take to send its request.
REQUEST_TIMEOUT: Final = 10.0
_PAGE: Final = (
    "<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body></html>"
)

#: Checks the callback's parameters; returns a problem (shown on the page) or None.
Check = Callable[[dict[str, str]], "str | None"]


class _Server(HTTPServer):
    listener: CallbackListener

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves an FQDN, which can stall on a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("login listener: a connection failed")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "requests-tokenrotate"

    def do_GET(self) -> None:
        listener = self.server.listener
        url = urlsplit(self.path)
        if url.path != listener.path or listener.params is not None:
            self._page(404, "Not found", "This is a one-time login page.")
            return
        pairs = parse_qsl(url.query, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs):  # RFC 6749 §3.1: no parameter twice
            params = {"error": "invalid_request", "error_description": "a repeated parameter"}
        listener.params = params
        problem = listener.check(params)
        listener.problem = problem
        if problem is None:
            self._page(200, "Logged in", "You may close this tab and return to the terminal.")
        else:
            self._page(400, "Login failed", f"{problem}. You may close this tab.")

    def _page(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the authorization code


class CallbackListener:
    """Wait for one authorization response on ``http://127.0.0.1:PORT/PATH``.

    :param check: Validates the parameters while the browser waits, so the
        page can say whether the login worked.
    :param path: The redirect path.
    :param port: 0 (default) for an ephemeral port, or a fixed one for servers
        that register the exact redirect URI.
    """

    def __init__(self, check: Check, *, path: str = "/callback", port: int = 0) -> None:
        if not path.startswith("/"):
            raise ValueError("the redirect path must start with '/'")
        self.check = check
        self.path = path
        self.params: dict[str, str] | None = None
        self.problem: str | None = None
        self._server = _Server(("127.0.0.1", port), _Handler, bind_and_activate=True)
        self._server.listener = self

    @property
    def redirect_uri(self) -> str:
        """The redirect URI to send in the authorization request."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def wait(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> bool:
        """Serve until the callback arrived (True) or ``deadline`` (``clock`` seconds) passed."""
        while self.params is None:
            remaining = deadline - clock()
            if remaining <= 0:
                return False
            self._server.timeout = min(remaining, 1.0)
            self._server.handle_request()
        return True

    def close(self) -> None:
        """Stop listening."""
        self._server.server_close()
