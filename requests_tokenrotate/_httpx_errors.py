"""Errors raised through the httpx twin: ours, and :class:`httpx.RequestError` too.

Each of our errors gets a twin class that subclasses both its own class
(``TokenInvalidated``, ``RefreshError``, ...) and :class:`httpx.RequestError`,
so an httpx user's ``except httpx.HTTPError`` handlers keep working, and ours
do too. Needs the ``httpx`` extra, like :mod:`requests_tokenrotate.httpx`.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

import httpx

from .exceptions import (
    DiscoveryError,
    InvalidConfiguration,
    LockTimeout,
    NotLoggedIn,
    RefreshError,
    TokenInvalidated,
    TokenRotateError,
    TokenStoreError,
    _rebuild,
)

__all__ = ["raise_for_httpx"]


class _HTTPXError(httpx.RequestError):
    """Makes an error of ours an :class:`httpx.RequestError` as well.

    ``request`` is then httpx's property (an :class:`httpx.Request`), not
    requests' attribute: hence the ``type: ignore[misc]`` on each twin."""

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = TokenRotateError._state(self)  # type: ignore[arg-type]
        state.pop("_request", None)  # an httpx.Request does not cross a pickle
        return state


class _TokenRotateError(_HTTPXError, TokenRotateError):  # type: ignore[misc]
    pass


class _NotLoggedIn(_HTTPXError, NotLoggedIn):  # type: ignore[misc]
    pass


class _TokenInvalidated(_HTTPXError, TokenInvalidated):  # type: ignore[misc]
    pass


class _RefreshError(_HTTPXError, RefreshError):  # type: ignore[misc]
    pass


class _DiscoveryError(_HTTPXError, DiscoveryError):  # type: ignore[misc]
    pass


class _TokenStoreError(_HTTPXError, TokenStoreError):  # type: ignore[misc]
    pass


class _LockTimeout(_HTTPXError, LockTimeout):  # type: ignore[misc]
    pass


class _InvalidConfiguration(_HTTPXError, InvalidConfiguration):  # type: ignore[misc]
    pass


_TWINS: Final[dict[type[TokenRotateError], type[TokenRotateError]]] = {
    TokenRotateError: _TokenRotateError,
    NotLoggedIn: _NotLoggedIn,
    TokenInvalidated: _TokenInvalidated,
    RefreshError: _RefreshError,
    DiscoveryError: _DiscoveryError,
    TokenStoreError: _TokenStoreError,
    LockTimeout: _LockTimeout,
    InvalidConfiguration: _InvalidConfiguration,
}


def raise_for_httpx(
    exc: TokenRotateError, request: httpx.Request, response: httpx.Response | None = None
) -> NoReturn:
    """Raise ``exc`` as the matching error that is also an :class:`httpx.RequestError`."""
    if isinstance(exc, _HTTPXError):
        twin = exc
    else:
        cls = next(_TWINS[klass] for klass in type(exc).__mro__ if klass in _TWINS)
        twin = _rebuild(cls, exc._state())
    twin.request = request  # type: ignore[assignment]  # httpx's property on a twin
    twin.response = response  # type: ignore[assignment]  # the httpx answer, if any
    raise twin from exc.__cause__
