"""The reply a LocalIdP route returns, and the errors that become replies."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

_NO_STORE: Final = MappingProxyType({"Cache-Control": "no-store", "Pragma": "no-cache"})


class _OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status


class _BadRequest(Exception):
    """The HTTP framing of a request was unusable; the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _InvalidToken(Exception):
    """An access token failed validation; ``str(exc)`` is safe to send and log."""


class _Reply(NamedTuple):
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = MappingProxyType({})
    action: str = ""  # "hang" or "reset": answer nothing


def _json_reply(
    status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def _error_reply(exc: _OAuthError) -> _Reply:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="LocalIdP"'  # RFC 6749 5.2 invalid_client
    payload = {"error": exc.error, "error_description": exc.description}
    return _json_reply(exc.status, payload, headers)


def _failure_reply(mode: str) -> _Reply:
    if mode in ("hang", "reset"):
        return _Reply(0, action=mode)
    if mode == "html":
        return _Reply(200, b"<html>Proxy error</html>", "text/html; charset=utf-8")
    if mode == "invalid_json":
        return _Reply(200, b'{"access_token": <garbage')
    if mode == "no_access_token":
        return _json_reply(200, {"token_type": "Bearer"})
    error = "server_error" if mode == "500" else "temporarily_unavailable"
    return _json_reply(int(mode), {"error": error})
