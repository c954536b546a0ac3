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
    action: str = ""  # "hang" or "reset": answer nothing; "drip", "endless": stream the body


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


#: A valid token answer: a fault that delivers it slowly must still be refused.
_TOKEN_BODY: Final = b'{"access_token": "slow-token", "token_type": "Bearer", "expires_in": 60}'
#: Size of the "huge" fault's body: over any 1 MiB answer cap.
HUGE_BODY_BYTES: Final = 2 << 20


def _failure_reply(mode: str, *, retry_after: str = "1") -> _Reply:
    if mode in ("hang", "reset"):
        return _Reply(0, action=mode)
    if mode in ("drip", "endless"):
        return _Reply(200, _TOKEN_BODY, action=mode)
    if mode == "huge":
        padding = b" " * (HUGE_BODY_BYTES - len(_TOKEN_BODY))
        return _Reply(200, _TOKEN_BODY[:-1] + b', "pad": "' + padding + b'"}')
    if mode == "bare_400":
        return _Reply(400, b"")
    if mode in ("503_retry_after", "429_retry_after"):
        payload = {"error": "temporarily_unavailable"}
        return _json_reply(int(mode[:3]), payload, {"Retry-After": retry_after})
    if mode == "html":
        return _Reply(200, b"<html>Proxy error</html>", "text/html; charset=utf-8")
    if mode == "invalid_json":
        return _Reply(200, b'{"access_token": <garbage')
    if mode == "no_access_token":
        return _json_reply(200, {"token_type": "Bearer"})
    error = "server_error" if mode == "500" else "temporarily_unavailable"
    return _json_reply(int(mode), {"error": error})


def _echo_reply(form: Mapping[str, str], secret: str | None) -> _Reply:
    """A 400 whose error fields quote every value the client sent (a careless server)."""
    sent = " ".join(f"{name}={value}" for name, value in form.items())
    if secret is not None:
        sent += f" client_secret={secret}"
    payload = {"error": "invalid_request", "error_description": f"cannot use {sent}"}
    payload["error_uri"] = "https://idp.invalid/help?" + sent.replace(" ", "&")
    return _json_reply(400, payload, _NO_STORE)
