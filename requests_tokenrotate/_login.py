"""The first token: the device authorization grant (RFC 8628) and what every login shares.

A login asks the server for a complete token first and only then stores it,
through the key's gate (:meth:`TokenSource.login`): a process that reads the
key meanwhile sees the old state or the new token, never half a login, and an
interrupted login (Ctrl-C, a denial, an expired code) stores nothing.
The browser flow (authorization code + PKCE) lives in ``_browser``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._endpoint import OAuthClient
from ._token import Record, Token, fingerprint
from .exceptions import (
    InvalidConfiguration,
    LoginError,
    RefreshError,
    TokenInvalidated,
)

if TYPE_CHECKING:
    from ._source import TokenSource

logger = logging.getLogger(__name__)

DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §3.2: the polling interval when the server names none.
DEFAULT_INTERVAL: Final = 5.0
#: RFC 8628 §3.5: ``slow_down`` adds 5 seconds to the interval, for good.
SLOW_DOWN_STEP: Final = 5.0
#: Consecutive transient failures (5xx, timeouts) tolerated while polling.
MAX_POLL_FAILURES: Final = 3
#: A hard bound on polls, whatever the server says about intervals and lifetimes.
MAX_POLLS: Final = 2000
#: The refresh token is missing from most servers' answers without this scope.
_OFFLINE_HINT: Final = (
    "the server issued no refresh token: the login lasts only as long as the access token "
    "(ask for the offline_access scope, or allow refresh tokens for this client)"
)


def login_params(
    scope: str | None,
    audience: str | None,
    resource: str | None,
    extra: Mapping[str, str] | None,
) -> dict[str, str]:
    """The optional authorization parameters: scope, audience, RFC 8707 resource, extras."""
    params = {
        name: value
        for name, value in (("scope", scope), ("audience", audience), ("resource", resource))
        if value
    }
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidConfiguration("extra authorization parameters must be str to str")
        params[name] = value
    return params


def resolve(
    target: TokenSource | OAuthClient, client: OAuthClient | None
) -> tuple[OAuthClient, TokenSource | None]:
    """The client to log in with, and the source to store into (None: only return the token)."""
    if isinstance(target, OAuthClient):
        return client or target, None
    found = client or getattr(getattr(target, "grant", None), "client", None)
    if not isinstance(found, OAuthClient):
        raise InvalidConfiguration(
            f"cannot log {getattr(target, 'key', '?')!r} in: its grant has no OAuthClient; "
            "pass client="
        )
    return found, target


def finish(token: Token, source: TokenSource | None, how: str) -> Token:
    """Store ``token`` through the gate (if there is a source) and warn without a refresh token."""
    key = source.key if source is not None else "-"
    if token.refresh_token is None:
        logger.warning("%s: %s", key, _OFFLINE_HINT)
    if source is not None:
        token = source.login(token)
    logger.debug("%s: %s login done, token %s", key, how, fingerprint(token.access_token))
    return token


def revoke_token(client: object, token: Token) -> None:
    """Revoke ``token``'s refresh token, then its access token (RFC 7009 §2.1)."""
    if not isinstance(client, OAuthClient):
        raise InvalidConfiguration("cannot revoke: the grant has no OAuthClient; pass client=")
    if token.refresh_token:
        client.revoke(token.refresh_token, token_type_hint="refresh_token")  # noqa: S106
    client.revoke(token.access_token, token_type_hint="access_token")  # noqa: S106
    logger.debug("revoked token %s", fingerprint(token.access_token))


class DeviceCode(Record):
    """What the user needs to approve a device login (RFC 8628 §3.2); no secret in it.

    :ivar user_code: The code the user types at :attr:`verification_uri`.
    :ivar verification_uri: Where the user goes.
    :ivar verification_uri_complete: The same with the code filled in, if the
        server sends one (e.g. for a QR code).
    :ivar expires_in: Seconds the codes stay valid.
    :ivar interval: Seconds between polls.

    .. versionadded:: 0.2.0
    """

    __slots__ = (
        "expires_in",
        "interval",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
    )
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    def __init__(
        self,
        user_code: str,
        verification_uri: str,
        verification_uri_complete: str | None,
        expires_in: float,
        interval: float,
    ) -> None:
        self._init(
            user_code=user_code,
            verification_uri=verification_uri,
            verification_uri_complete=verification_uri_complete,
            expires_in=expires_in,
            interval=interval,
        )

    @classmethod
    def from_response(cls, answer: Mapping[str, Any]) -> tuple[DeviceCode, str]:
        """The record and the device code from a device authorization answer.

        :raises ValueError: A required field is missing or mistyped.
        """
        device_code = answer.get("device_code")
        user_code = answer.get("user_code")
        # "verification_url": Google's name for it before RFC 8628.
        uri = answer.get("verification_uri") or answer.get("verification_url")
        complete = answer.get("verification_uri_complete")
        expires_in = answer.get("expires_in")
        interval = answer.get("interval", DEFAULT_INTERVAL)
        for name, value in (("device_code", device_code), ("user_code", user_code),
                            ("verification_uri", uri)):  # fmt: skip
            if not isinstance(value, str) or not value:
                raise ValueError(f"the answer has no {name}")
        lifetime, every = _seconds(expires_in), _seconds(interval)
        if lifetime is None or lifetime <= 0:
            raise ValueError("the answer has no positive expires_in")
        if every is None or every < 0:
            raise ValueError("the answer's interval is not a number of seconds")
        code = cls(
            str(user_code),
            str(uri),
            complete if isinstance(complete, str) and complete else None,
            lifetime,
            every,
        )
        return code, str(device_code)


def _seconds(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def print_device_code(code: DeviceCode) -> None:
    """The default prompt: two lines on stderr."""
    minutes = max(1, round(code.expires_in / 60))
    print(
        f"To log in, open {code.verification_uri} and enter the code {code.user_code} "
        f"(valid for {minutes} min).",
        file=sys.stderr,
    )
    if code.verification_uri_complete:
        print(f"Or open {code.verification_uri_complete}", file=sys.stderr)
    sys.stderr.flush()


def login_device(
    target: TokenSource | OAuthClient,
    *,
    scope: str | None = None,
    audience: str | None = None,
    resource: str | None = None,
    extra: Mapping[str, str] | None = None,
    client: OAuthClient | None = None,
    prompt: Callable[[DeviceCode], object] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Token:
    """Log in with the device authorization grant (RFC 8628) and store the token.

    Asks the device authorization endpoint (given as
    ``OAuthClient(device_authorization_url=...)`` or discovered) for a code,
    shows it through ``prompt``, then polls the token endpoint every
    ``interval`` seconds (``slow_down`` adds 5 s) until the user approves,
    denies, or the code expires. Nothing is stored before the token is
    complete, so an interruption (Ctrl-C) leaves the key as it was.

    :param target: A :class:`TokenSource` (its grant's client logs in and the
        token is stored under its key), or an :class:`OAuthClient` (the token
        is only returned).
    :param scope: The scope to ask for; most servers issue a refresh token only
        with ``offline_access`` (a warning is logged when none comes back).
    :param audience: An ``audience`` parameter, for servers that want one.
    :param resource: A resource indicator (RFC 8707).
    :param extra: More parameters for the device authorization request.
    :param client: Log in with this client instead of the source's grant's.
    :param prompt: Called once with the :class:`DeviceCode` to show the user;
        default: a message on stderr.
    :param sleep: Waits between polls (tests inject one).
    :param clock: Monotonic seconds for the code's expiry (tests inject one).
    :returns: The new token (stored, when ``target`` is a source).
    :raises LoginError: The user denied (``access_denied``), the code expired
        (``expired_token``) or the server refused the device code.
    :raises InvalidConfiguration: No device authorization endpoint, or the
        server refused the client.
    :raises RefreshError: The server kept failing transiently.

    .. versionadded:: 0.2.0
    """
    client, source = resolve(target, client)
    params = login_params(scope, audience, resource, extra)
    answer = client.device_authorization(params)
    try:
        code, device_code = DeviceCode.from_response(answer)
    except ValueError as exc:
        raise RefreshError(f"unusable device authorization answer: {exc}") from None
    (prompt or print_device_code)(code)
    token = _poll(client, device_code, code, sleep, clock)
    return finish(token, source, "device")


def _poll(
    client: OAuthClient,
    device_code: str,
    code: DeviceCode,
    sleep: Callable[[float], object],
    clock: Callable[[], float],
) -> Token:
    deadline = clock() + code.expires_in
    interval, failures = code.interval, 0
    params = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code}
    for _ in range(MAX_POLLS):
        remaining = deadline - clock()
        if remaining > 0:
            sleep(min(interval, remaining))  # RFC 8628 §3.4: wait before each request
        if clock() >= deadline:
            break
        try:
            return client.request_token(params, grant="device_code")
        except TokenInvalidated as exc:
            raise LoginError(
                f"the server refused the device code ({exc.message}); start the login again",
                error="invalid_grant",
            ) from None
        except RefreshError as exc:
            error = exc.error
            if error == "authorization_pending":
                failures = 0
                continue
            if error == "slow_down":
                failures = 0
                interval += SLOW_DOWN_STEP
                logger.debug("device login: slow_down, polling every %g s", interval)
                continue
            if error == "access_denied":
                raise LoginError("the login was denied", error=error) from None
            if error == "expired_token":
                raise _expired() from None
            status = exc.status_code
            if status is not None and status < 500 and status != 429:
                raise LoginError(
                    f"the device login failed: {exc.message}",
                    error=error,
                    error_description=exc.error_description,
                ) from None
            failures += 1
            if failures > MAX_POLL_FAILURES:
                raise
            logger.warning("device login: %s; polling again", exc)
    raise _expired()


def _expired() -> LoginError:
    return LoginError(
        "the device code expired before the login was approved; start the login again",
        error="expired_token",
    )
