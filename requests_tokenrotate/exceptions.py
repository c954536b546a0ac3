"""Exceptions raised by requests-tokenrotate.

Every error is a :class:`requests.exceptions.RequestException`, so code that
already handles requests' errors handles ours too::

    requests.exceptions.RequestException
    +-- TokenRotateError
        +-- NotLoggedIn             nothing stored for the key: log in
        +-- TokenInvalidated        the refresh credential was rejected: log in again
        +-- RefreshError            transient token-endpoint failure: try again later
        |   +-- RevocationError     the server did not confirm a revocation (RFC 7009)
        +-- LoginError              a login did not complete: denied, expired, bad callback
        +-- DiscoveryError          the OIDC discovery document could not be used
        +-- TokenStoreError         the store is unreadable or corrupt (.path)
        +-- LockTimeout             the refresh lock stayed busy past its timeout
        |   +-- LockLost            a lease ran out under its holder: nothing was sent or saved
        +-- InvalidConfiguration    (also a ValueError) bad arguments, invalid_client

Messages name the key, the endpoint and the OAuth ``error`` code; they never
contain a token or a client secret.
"""

from __future__ import annotations

from typing import Any

from requests.exceptions import RequestException

__all__ = [
    "DiscoveryError",
    "InvalidConfiguration",
    "LockLost",
    "LockTimeout",
    "LoginError",
    "NotLoggedIn",
    "RefreshError",
    "RevocationError",
    "TokenInvalidated",
    "TokenRotateError",
    "TokenStoreError",
]


class TokenRotateError(RequestException):
    """Root of every requests-tokenrotate error.

    :param key: The token-store key concerned, if any.
    :param hint: What the user should do, appended to the message
        (e.g. ``"run `mytool login`"``).
    """

    def __init__(
        self,
        message: str = "",
        *,
        key: str | None = None,
        hint: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.message = message
        self.key = key
        self.hint = hint
        text = f"{message} ({hint})" if hint else message
        super().__init__(text, **kwargs)

    def _state(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # Responses and requests hold sockets; they do not cross a pickle.
        state.pop("response", None)
        state.pop("request", None)
        state.pop("args", None)
        return state

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._state()))

    def for_key(self, key: str, hint: str | None = None) -> TokenRotateError:
        """Return this error naming ``key`` (in ``.key`` and the message) and ``hint``."""
        state = self._state()
        if self.key is None:
            state["key"] = key
            if repr(key) not in self.message:
                state["message"] = f"{key!r}: {self.message}"
        if hint and not self.hint:
            state["hint"] = hint
        if state == self._state():
            return self
        clone = _rebuild(type(self), state)
        clone.__cause__ = self.__cause__
        clone.response = self.response
        clone.request = self.request
        return clone


def _rebuild(cls: type[TokenRotateError], state: dict[str, Any]) -> TokenRotateError:
    error = cls.__new__(cls)
    message = state.get("message", "")
    hint = state.get("hint")
    TokenRotateError.__init__(error, message, key=state.get("key"), hint=hint)
    error.__dict__.update(state)
    return error


class NotLoggedIn(TokenRotateError):
    """Nothing is stored for the key: the user has to log in first."""


class TokenInvalidated(TokenRotateError):
    """The refresh credential was rejected (``invalid_grant``): log in again.

    :ivar invalidated_at: When the credential was found dead (epoch seconds).
    """

    def __init__(
        self, message: str = "", *, invalidated_at: float | None = None, **kwargs: Any
    ) -> None:
        self.invalidated_at = invalidated_at
        super().__init__(message, **kwargs)


class RefreshError(TokenRotateError):
    """A transient token-endpoint failure (5xx, 429, timeout, unusable body).

    Nothing was stamped; the next call tries again.

    :ivar status_code: The HTTP status, when a response arrived.
    :ivar error: The OAuth ``error`` code, when the body carried one.
    :ivar error_description: The OAuth ``error_description``, if any.
    """

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        super().__init__(message, **kwargs)


class RevocationError(RefreshError):
    """The revocation endpoint (RFC 7009) did not confirm that a token is revoked.

    The token may still be live at the server; :meth:`TokenSource.logout` keeps
    the local copy then, so that revoking can be tried again.

    .. versionadded:: 0.2.0
    """


class LoginError(TokenRotateError):
    """A device or browser login did not complete; nothing was stored.

    :ivar error: The OAuth ``error`` code (``access_denied``, ``expired_token``,
        ``invalid_grant``, ...) or one of ours: ``state_mismatch``,
        ``issuer_mismatch``, ``timeout``.
    :ivar error_description: The server's ``error_description``, if any.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        message: str = "",
        *,
        error: str | None = None,
        error_description: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.error = error
        self.error_description = error_description
        super().__init__(message, **kwargs)


class DiscoveryError(TokenRotateError):
    """The OIDC / RFC 8414 discovery document could not be fetched or used."""


class TokenStoreError(TokenRotateError):
    """The token store is unreadable, corrupt or unsafe.

    :ivar path: The file concerned, if the store is file based.
    """

    def __init__(self, message: str = "", *, path: str | None = None, **kwargs: Any) -> None:
        self.path = path
        super().__init__(message, **kwargs)


class LockTimeout(TokenRotateError):
    """The per-key refresh lock stayed busy past its timeout."""


class LockLost(LockTimeout):
    """The refresh lock was lost (a lease expired) or the key changed under it.

    Raised before a token-endpoint call that could not finish inside the
    lease (no call is made), and by a compare-and-set save that found a newer
    token (nothing is written). Try again: the next holder re-reads the store.
    """


class InvalidConfiguration(TokenRotateError, ValueError):
    """A misconfiguration: bad arguments, or the server said ``invalid_client``."""
