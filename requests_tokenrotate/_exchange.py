"""One HTTP exchange bounded in wall-clock time and in size.

The token endpoint and discovery make their calls through :func:`exchange`.
requests' ``timeout=(connect, read)`` bounds each socket operation, not the
call: a server that sends one byte every few seconds never trips it, and
would hold the refresh lock for as long as it likes. So the call runs in a
worker thread while the caller waits at most until the deadline; past it the
caller gets a ``DEADLINE`` answer and the worker's socket is shut down, which
ends any read it is blocked in. The body is read in chunks, at most
``limit`` bytes, so an endless or huge answer costs bounded memory.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import requests
from urllib3.exceptions import ConnectTimeoutError

from ._token import Record

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: Wall-clock seconds for a whole token-endpoint or discovery call.
DEFAULT_DEADLINE: Final = 30.0
#: The largest token or discovery answer read (golang/oauth2 caps at 1 MiB too).
MAX_ANSWER_BYTES: Final = 1 << 20
_CHUNK: Final = 1 << 14

#: The connection failed before the request was sent: always safe to repeat.
NOT_SENT: Final = "not_sent"
#: The request may have reached the server (reset, read timeout, broken body).
LOST: Final = "lost"
#: The deadline passed before the answer was complete.
DEADLINE: Final = "deadline"
#: The answer was larger than the limit.
TOO_LARGE: Final = "too_large"


class Answer(Record):
    """What one exchange produced: a complete answer, or why there is none.

    :ivar status: The HTTP status, 0 when no answer was read.
    :ivar headers: The response headers (case-insensitive), empty without an answer.
    :ivar body: The whole body (at most the limit).
    :ivar failure: None for a complete answer, else ``NOT_SENT``, ``LOST``,
        ``DEADLINE`` or ``TOO_LARGE``.
    :ivar detail: The name of the exception behind a failure (never its message:
        requests' messages can quote the URL and its exceptions hold the request).
    """

    __slots__ = ("body", "detail", "failure", "headers", "status")
    status: int
    headers: Mapping[str, str]
    body: bytes
    failure: str | None
    detail: str

    def __init__(
        self,
        status: int = 0,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        failure: str | None = None,
        detail: str = "",
    ) -> None:
        self._init(
            status=status, headers=headers if headers is not None else {}, body=body,
            failure=failure, detail=detail,
        )  # fmt: skip

    def __repr__(self) -> str:  # the body can hold tokens
        return f"Answer(status={self.status}, failure={self.failure!r}, size={len(self.body)})"


def failure_kind(exc: requests.RequestException) -> str:
    """``NOT_SENT`` if ``exc`` was raised while connecting, else ``LOST``.

    urllib3 raises ``NewConnectionError`` (refused, unreachable, DNS) and
    ``ConnectTimeoutError`` before a byte of the request was written; anything
    else (reset, read timeout, TLS) may come after the server got the request.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return NOT_SENT
    proxied = isinstance(exc, requests.exceptions.ProxyError)
    if isinstance(exc, requests.ConnectionError) and not proxied:
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        if isinstance(reason, ConnectTimeoutError):  # NewConnectionError is a subclass
            return NOT_SENT
    return LOST


def _pair(timeout: float | tuple[float, float] | None) -> tuple[float, float]:
    if timeout is None:
        return (DEFAULT_DEADLINE, DEFAULT_DEADLINE)
    if isinstance(timeout, tuple):
        return (float(timeout[0]), float(timeout[1]))
    return (float(timeout), float(timeout))


class _Call:
    """One exchange run by a worker thread, abandoned by the caller at the deadline."""

    def __init__(
        self,
        session: requests.Session,
        method: str,
        url: str,
        until: float,
        timeout: float | tuple[float, float] | None,
        limit: int,
        kwargs: dict[str, Any],
    ) -> None:
        self.session, self.method, self.url = session, method, url
        self.until, self.timeout, self.limit, self.kwargs = until, timeout, limit, kwargs
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.abandoned = False
        self.response: requests.Response | None = None
        self.answer = Answer(failure=DEADLINE)

    def run(self) -> None:
        try:
            self.answer = self._attempt()
        except Exception as exc:  # a worker must always report back
            self.answer = Answer(failure=LOST, detail=type(exc).__name__)
        finally:
            self.done.set()

    def _attempt(self) -> Answer:
        remaining = self.until - time.monotonic()
        if remaining <= 0:
            return Answer(failure=DEADLINE)
        connect, read = _pair(self.timeout)
        try:
            response = self.session.request(
                self.method,
                self.url,
                stream=True,
                timeout=(min(connect, remaining), min(read, remaining)),
                **self.kwargs,
            )
        except requests.RequestException as exc:
            return Answer(failure=failure_kind(exc), detail=type(exc).__name__)
        with response:  # closes (not drains) the connection of an unread body
            with self.lock:
                if self.abandoned:
                    return Answer(failure=DEADLINE)
                self.response = response
            return self._read(response)

    def _read(self, response: requests.Response) -> Answer:
        headers = response.headers
        length = headers.get("Content-Length", "").strip()
        if length.isdecimal() and int(length) > self.limit:
            return Answer(response.status_code, headers, failure=TOO_LARGE)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > self.limit:
                    return Answer(response.status_code, headers, failure=TOO_LARGE)
                if self.abandoned or time.monotonic() >= self.until:
                    return Answer(response.status_code, headers, failure=DEADLINE)
                chunks.append(chunk)
        except requests.RequestException as exc:
            return Answer(response.status_code, headers, failure=LOST, detail=type(exc).__name__)
        return Answer(response.status_code, headers, b"".join(chunks))

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            response = self.response
        if response is None:
            return  # still connecting or reading headers: bounded by the clamped timeouts
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if isinstance(sock, socket.socket):
            # Wakes a read blocked on a server that drips: it returns at once.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    until: float,
    timeout: float | tuple[float, float] | None,
    limit: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> Answer:
    """Send one request and read its whole answer, by ``until`` and within ``limit``.

    :param until: The deadline, a :func:`time.monotonic` instant.
    :param timeout: requests' ``(connect, read)`` seconds, each clamped to the
        time left.
    :param limit: The most body bytes read; a larger answer is ``TOO_LARGE``
        (a ``Content-Length`` above it is refused before reading).
    :returns: An :class:`Answer`; never raises for network trouble.
    """
    call = _Call(session, method, url, until, timeout, limit, kwargs)
    worker = threading.Thread(target=call.run, name="requests-tokenrotate-call", daemon=True)
    worker.start()
    if call.done.wait(max(0.0, until - time.monotonic())):
        return call.answer
    call.abandon()
    logger.debug("%s %s abandoned at its deadline", method, url)
    return Answer(failure=DEADLINE)
