"""A loopback resource server whose verdict on each request is up to the test.

LocalIdP answers a bad token with a 401; this one answers with any status and
``WWW-Authenticate`` challenge (a 403 ``invalid_token``, a django-style
challenge without spaces, a 401 for every token) and records every request
with all of its headers, so a test can check what reached a second origin.
"""

from __future__ import annotations

import hashlib
import json
import socketserver
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Verdict = Callable[[Mapping[str, str]], bool]


def has_authorization(headers: Mapping[str, str]) -> bool:
    return "authorization" in headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves an FQDN, which can stall on a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class ChallengeServer:
    """Answer 200 when ``accept(headers)`` (lower-cased names; ``:path`` is the request's
    path), else ``status`` + ``challenge``.

    ``redirects`` maps a path to a ``Location``: an accepted request there gets a 302.

    :ivar requests: One dict per request: ``method``, ``path``, ``headers``,
        ``length``, ``sha256``, ``status``.
    """

    def __init__(
        self,
        accept: Verdict = has_authorization,
        *,
        status: int = 401,
        challenge: str | None = 'Bearer error="invalid_token"',
        set_cookie: str | None = None,
        redirects: Mapping[str, str] | None = None,
    ) -> None:
        self.accept = accept
        self.status = status
        self.challenge = challenge
        self.set_cookie = set_cookie
        self.redirects = dict(redirects or {})
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ChallengeServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                body = self._read_body()
                ok = owner.accept({**headers, ":path": self.path})  # the path, for a verdict
                location = owner.redirects.get(self.path) if ok else None
                status = owner.status if not ok else 302 if location else 200
                with owner._lock:
                    owner.requests.append({
                        "method": self.command, "path": self.path, "headers": headers,
                        "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                        "status": status,
                    })  # fmt: skip
                payload = json.dumps(
                    {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
                )
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if not ok and owner.challenge is not None:
                    self.send_header("WWW-Authenticate", owner.challenge)
                if location is not None:
                    self.send_header("Location", location)
                if not ok and owner.set_cookie is not None:
                    self.send_header("Set-Cookie", owner.set_cookie)
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
