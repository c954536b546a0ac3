"""The loopback HTTP server of LocalIdP and its request handler (incl. chunked bodies)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import socket
import socketserver
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ._replies import _BadRequest, _json_reply, _Reply

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._idp import LocalIdP

logger = logging.getLogger(__name__)

_MAX_FORM: Final = 1 << 20
_MAX_LINE: Final = 8192
_READ_SIZE: Final = 1 << 16
_ENDLESS_BYTES: Final = 64 << 20
_CHUNK_SIZE_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
# struct linger {l_onoff, l_linger}: on with a zero timeout makes close() send a RST.
_LINGER_RESET: Final = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)


class _Server(ThreadingHTTPServer):
    """Loopback HTTP server that tracks open connections so that stop() can close them."""

    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients must not hit SYN retransmits

    def __init__(self, idp: LocalIdP) -> None:
        self.idp = idp
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", idp.bind_port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves an FQDN, which can stall on a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self.idp._idle:
                self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self.idp._idle:
                self.connections.discard(request)
                self.idp._idle.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside socketserver's except block; log the type only, never the message.
        logger.debug("LocalIdP: connection failed with %s", type(sys.exc_info()[1]).__name__)

    def close_connections(self, timeout: float) -> None:
        with self.idp._idle:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # unblocks keep-alive reads
            if not self.idp._idle.wait_for(lambda: not self.connections, timeout):
                logger.warning("LocalIdP: %d connections still open", len(self.connections))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalIdP/1.0"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def do_GET(self) -> None:
        """Dispatch every method through one router."""
        idp = self.server.idp
        url = urlsplit(self.path)
        try:
            if url.path == idp.issuer_path + "/token":
                body = b"".join(self._body(_MAX_FORM))
                content_type = self.headers.get("Content-Type", "")
                reply = idp._handle_token(
                    self.command, body, content_type, self.headers.get("Authorization")
                )
            elif url.path in idp._login_paths():
                body = b"".join(self._body(_MAX_FORM))
                reply = idp._handle_login(
                    self.command, url.path, url.query, body,
                    self.headers.get("Content-Type", ""), self.headers.get("Authorization"),
                )  # fmt: skip
            else:
                sha, length = hashlib.sha256(), 0
                for chunk in self._body(None):
                    sha.update(chunk)
                    length += len(chunk)
                reply = idp._route(
                    self.command, url.path, url.query, self.headers.get("Authorization"),
                    length, sha.hexdigest(),
                )  # fmt: skip
        except _BadRequest as exc:
            self.close_connection = True
            payload = {"error": "invalid_request", "error_description": str(exc)}
            reply = _json_reply(exc.status, payload)
        self._answer(reply)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _body(self, limit: int | None) -> Iterator[bytes]:
        """Yield the request body, decoding ``Transfer-Encoding: chunked`` (RFC 9112 7.1)."""
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if [c.strip().lower() for c in encoding.split(",") if c.strip()] != ["chunked"]:
                raise _BadRequest(501, "Only Transfer-Encoding: chunked is supported")
            if "Content-Length" in self.headers:  # RFC 9112 6.1: answer, then close
                self.close_connection = True
            sizes = self._chunk_sizes()
        else:
            text = self.headers.get("Content-Length", "0").strip()
            if not text.isdecimal() or not text.isascii():
                raise _BadRequest(400, "Invalid Content-Length")
            sizes = iter([int(text)])
        total = 0
        for size in sizes:
            total += size
            if limit is not None and total > limit:
                raise _BadRequest(413, "Request body too large")
            while size:
                data = self.rfile.read(min(size, _READ_SIZE))
                if not data:
                    raise _BadRequest(400, "Request body truncated")
                size -= len(data)
                yield data
            if encoding is not None and self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise _BadRequest(400, "Missing CRLF after a chunk")

    def _chunk_sizes(self) -> Iterator[int]:
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            size = line.split(b";", 1)[0].strip()
            if len(line) > _MAX_LINE or not _CHUNK_SIZE_RE.fullmatch(size):
                raise _BadRequest(400, "Invalid chunk size line")
            if int(size, 16) == 0:
                break
            yield int(size, 16)
        while True:  # trailer section, ignored
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return
            if len(line) > _MAX_LINE:
                raise _BadRequest(400, "Trailer line too long")

    def _answer(self, reply: _Reply) -> None:
        if reply.action == "hang":
            self.server.idp._stopping.wait(self.server.idp.hang_seconds)
            self.close_connection = True
            return
        if reply.action == "reset":
            self._reset()
            return
        if reply.action in ("drip", "endless"):
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client gave up: that is the point
                self._stream(reply)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    def _stream(self, reply: _Reply) -> None:
        """Send ``reply.body`` one byte per ``drip_seconds``, or an endless chunked body."""
        idp = self.server.idp
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if reply.action == "drip":
            self.send_header("Content-Length", str(len(reply.body)))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if reply.action == "drip":
            for index in range(len(reply.body)):
                if idp._stopping.wait(idp.drip_seconds):
                    return
                self.wfile.write(reply.body[index : index + 1])
            return
        chunk = b"%x\r\n%s\r\n" % (_READ_SIZE, b" " * _READ_SIZE)
        self.wfile.write(b"%x\r\n%s\r\n" % (len(reply.body) - 1, reply.body[:-1]))
        for _ in range(_ENDLESS_BYTES // _READ_SIZE):  # "endless", yet bounded
            if idp._stopping.is_set():
                return
            self.wfile.write(chunk)

    def _reset(self) -> None:
        """Close the connection abortively: SO_LINGER 0 makes close() send a RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the peer may already be gone
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.rfile.close()  # drops the makefile() reference, so close() really closes
        self.wfile.close()
        self.connection.close()
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()  # finish() flushes and closes these

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the full request line: a query string could carry a credential.
        logger.debug("LocalIdP %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)
