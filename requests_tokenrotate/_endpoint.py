"""The token endpoint client: POST a form, read RFC 6749 §5.1 / §5.2."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus

import requests

from ._answers import (
    SECRET_PARAMS,
    error_from_answer,
    failure_error,
    is_bare_400,
    parse_json,
    token_from_answer,
)
from ._exchange import DEFAULT_DEADLINE, LOST, NOT_SENT, exchange
from ._gate import PicklesWithoutLocks
from ._retry import DEFAULT_MAX_ATTEMPTS, parse_retry_after, retry_delay
from .exceptions import InvalidConfiguration, RefreshError, RevocationError

if TYPE_CHECKING:
    from types import TracebackType

    from ._discovery import Discovery
    from ._exchange import Answer
    from ._token import Token

logger = logging.getLogger(__name__)

#: (connect, read) seconds for each socket operation; the deadline bounds the call.
DEFAULT_TIMEOUT: Final = (5.0, 30.0)
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
#: Refresh-token fingerprints that got a bare 400, remembered per client.
_BARE_MEMORY: Final = 16


class OAuthClient(PicklesWithoutLocks):
    """A client of one authorization server's token endpoint.

    :param token_url: The token endpoint. Give this or ``issuer``.
    :param issuer: The issuer URL; the token endpoint is discovered lazily
        (OIDC discovery, then RFC 8414) on the first token-endpoint call.
    :param client_id: The registered client id.
    :param client_secret: The client secret, for confidential clients.
    :param auth_method: ``client_secret_basic`` (default with a secret),
        ``client_secret_post`` or ``none`` (default without one).
    :param timeout: Seconds, or a ``(connect, read)`` pair, for each socket
        operation (connecting, then each read), as in requests. Default
        ``(5, 30)``. Each is clamped to the time left before ``deadline``.
    :param deadline: Wall-clock seconds for a whole token-endpoint call:
        discovery, connecting, sending, reading the full answer and any
        retries (default 30). ``timeout`` alone does not bound a call: a
        server that sends one byte per read timeout never trips it. Past the
        deadline the call is abandoned (its connection shut down) and
        :class:`RefreshError` (:class:`DiscoveryError` during discovery) is
        raised. It must stay below ``TokenSource(lock_timeout=)``.
    :param max_attempts: Attempts of one call, the first included (default
        3); 1 never retries.
    :param sleep: Waits between attempts (tests inject one).
    :param session: The :class:`requests.Session` for token calls and
        discovery; by default the client's own (closed by :meth:`close`),
        never a user's mounted one.
    :param discovery_ttl: Seconds a discovery document is reused from the
        disk cache (default one day; a shorter ``Cache-Control: max-age``
        wins). 0 keeps it off the disk: it is fetched once per process.
    :param cache_dir: Where discovery documents are cached. Default
        ``$REQUESTS_TOKENROTATE_HOME/cache/discovery`` when that variable is
        set, else ``discovery`` in the platformdirs user cache directory.
    :param clock: Epoch-seconds clock (tests inject one).
    :param authorization_url: The authorization endpoint for
        :func:`login_browser`; default: discovered from ``issuer``.
    :param device_authorization_url: The RFC 8628 device authorization
        endpoint for :func:`login_device`; default: discovered.
    :param revocation_url: The RFC 7009 revocation endpoint for
        :meth:`revoke`; default: discovered.
    :raises InvalidConfiguration: Neither ``token_url`` nor ``issuer``, no
        ``client_id``, a ``deadline`` that is not a positive number, an
        unknown ``auth_method`` or one without its secret, or an endpoint URL
        or ``issuer`` that is not https (plain http: loopback only).

    .. versionadded:: 0.2.0
       ``deadline``, ``max_attempts``, ``sleep``, ``authorization_url``,
       ``device_authorization_url`` and ``revocation_url``.
    """

    _LOCKS = ("_session_lock",)

    def __init__(
        self,
        token_url: str | None = None,
        issuer: str | None = None,
        *,
        client_id: str,
        client_secret: str | None = None,
        auth_method: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        discovery_ttl: float | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        deadline: float = DEFAULT_DEADLINE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        authorization_url: str | None = None,
        device_authorization_url: str | None = None,
        revocation_url: str | None = None,
    ) -> None:
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not math.isfinite(deadline)
            or deadline <= 0
        ):
            raise InvalidConfiguration("deadline must be a positive number of seconds")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidConfiguration("max_attempts must be an int >= 1")
        if not token_url and not issuer:
            raise InvalidConfiguration("OAuthClient needs token_url or issuer")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidConfiguration("OAuthClient needs a client_id")
        method = auth_method or ("client_secret_basic" if client_secret else "none")
        if method not in AUTH_METHODS:
            raise InvalidConfiguration(
                f"auth_method must be one of {', '.join(AUTH_METHODS)}, not {method!r}"
            )
        if method != "none" and not client_secret:
            raise InvalidConfiguration(f"auth_method {method} needs a client_secret")
        if token_url:
            from ._discovery import check_endpoint_url

            try:  # RFC 6749 §3.2: the token endpoint requires TLS
                check_endpoint_url(token_url, "token_url")
            except ValueError as exc:
                raise InvalidConfiguration(str(exc)) from None
        given = {
            "authorization_endpoint": authorization_url,
            "device_authorization_endpoint": device_authorization_url,
            "revocation_endpoint": revocation_url,
        }
        from ._discovery import check_endpoint_url

        for name, value in given.items():
            if value:
                try:  # the login endpoints carry codes and tokens too
                    check_endpoint_url(value, name)
                except ValueError as exc:
                    raise InvalidConfiguration(str(exc)) from None
        self._given = {name: value for name, value in given.items() if value}
        self.token_url = token_url or None
        self.issuer = issuer or None
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_method = method
        self.timeout = timeout
        self.deadline = float(deadline)
        self.max_attempts = max_attempts
        self.clock = clock
        self._sleep = sleep
        #: sha256 of refresh tokens whose last answer was a bare 400 (insertion order).
        self._bare_400s: dict[str, bool] = {}
        self._session = session
        self._session_lock = threading.Lock()
        self._discovery: Discovery | None = None
        if self.token_url is None:
            from ._discovery import Discovery

            assert issuer  # noqa: S101  # checked above
            # Nothing is fetched here: discovery waits for the first token call.
            self._discovery = Discovery(
                issuer, ttl=discovery_ttl, cache_dir=cache_dir, timeout=timeout,
                deadline=deadline, clock=clock,
            )  # fmt: skip
        self._own_session = session is None

    def __repr__(self) -> str:
        where = self.token_url or self.issuer
        method = self.auth_method
        return f"OAuthClient({where!r}, client_id={self.client_id!r}, auth_method={method!r})"

    def close(self) -> None:
        """Close the client's own session (a session passed in stays open)."""
        if self._own_session:
            with self._session_lock:
                session, self._session = self._session, None
            if session is not None:
                session.close()

    def __enter__(self) -> OAuthClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def session(self) -> requests.Session:
        """The session used for token-endpoint calls (created on first use)."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    self._session = requests.Session()
        return self._session

    def token_endpoint(self) -> str:
        """The token endpoint URL, discovering it on first need.

        :raises DiscoveryError: Discovery failed (retried on the next call).
        """
        return self._endpoint_by(time.monotonic() + self.deadline)

    def endpoint(self, name: str) -> str:
        """The URL of the server endpoint ``name``: given to the constructor, else discovered.

        :param name: A metadata name such as ``"authorization_endpoint"``,
            ``"device_authorization_endpoint"`` or ``"revocation_endpoint"``.
        :raises InvalidConfiguration: Not given, and no issuer to discover it
            from, or the issuer does not advertise it.
        :raises DiscoveryError: Discovery failed (retried on the next call).
        """
        if name == "token_endpoint":
            return self.token_endpoint()
        if name in self._given:
            return self._given[name]
        option = name.replace("_endpoint", "_url")
        if self._discovery is None:
            raise InvalidConfiguration(f"no {name}: pass {option}= or issuer= to OAuthClient")
        url = self.metadata().get(name)
        if not isinstance(url, str) or not url:
            raise InvalidConfiguration(
                f"issuer {self.issuer} advertises no {name}; pass {option}= to OAuthClient"
            )
        return url

    def metadata(self) -> Mapping[str, Any]:
        """The issuer's discovery document (discovered on first need); empty without ``issuer``.

        .. versionadded:: 0.2.0

        :raises DiscoveryError: Discovery failed (retried on the next call).
        """
        if self._discovery is None:
            return {}
        return self._discovery.document(self.session)

    def request_token(self, params: Mapping[str, str], *, grant: str | None = None) -> Token:
        """POST ``params`` to the token endpoint and return the issued token.

        The whole call, discovery and retries included, ends within
        ``deadline`` seconds. A call that certainly did not reach the server
        (connection refused, connect timeout) or that the server deferred (503
        or 429 with a ``Retry-After`` that fits in the time left) is repeated,
        up to ``max_attempts``; a 500/502/504, a reset or a read timeout is
        repeated only for grants that spend no refresh token.

        :raises TokenInvalidated: ``invalid_grant``, or a second bare 400 for the
            same refresh token: the grant is dead.
        :raises InvalidConfiguration: ``invalid_client`` and other setup errors.
        :raises RefreshError: Anything transient: the deadline, timeouts, 5xx,
            429, HTML, non-JSON or oversized bodies, a body without a usable
            ``access_token``.
        :raises DiscoveryError: The token endpoint could not be discovered.
        """
        until = time.monotonic() + self.deadline
        url = self._endpoint_by(until)
        data = self._authenticated(params)
        kind = grant or data.get("grant_type", "?")
        answer = self._post(url, data, kind, until, rotating=bool(data.get("refresh_token")))
        if answer.failure in (NOT_SENT, LOST) or answer.status == 404:
            # A cached document may name an endpoint that has moved: discover it
            # again on the next call instead of failing until the cache expires.
            self._forget_discovery()
        if answer.failure is not None:
            raise failure_error(url, answer, self.deadline)
        if answer.status == 200:
            token = token_from_answer(url, answer, now=self.clock())
            self._remember_bare(data.get("refresh_token"), bare=False)
            return token
        bare_again = self._remember_bare(data.get("refresh_token"), bare=is_bare_400(answer))
        raise error_from_answer(
            url, answer, secrets=self._secrets(data), now=self.clock(), bare_again=bare_again
        )

    def device_authorization(self, params: Mapping[str, str]) -> dict[str, Any]:
        """POST an RFC 8628 §3.1 device authorization request; the JSON answer.

        Bounded by ``deadline`` and retried like a grant that spends nothing.

        .. versionadded:: 0.2.0

        :raises InvalidConfiguration: ``invalid_client``, ``invalid_scope``, no endpoint.
        :raises RefreshError: A transient failure or an unusable answer.
        """
        what = "device authorization endpoint"
        until = time.monotonic() + self.deadline
        url = self.endpoint("device_authorization_endpoint")
        data = self._authenticated(params)
        answer = self._post(url, data, "device authorization", until, rotating=False)
        if answer.failure is not None:
            raise failure_error(url, answer, self.deadline, what)
        body = parse_json(answer.body)
        if answer.status == 200 and isinstance(body, dict):
            return body
        if answer.status == 200:
            raise RefreshError(
                f"{what} {url} answered 200 with a body that is not a JSON object",
                status_code=200,
            )
        raise error_from_answer(
            url, answer, secrets=self._secrets(data), now=self.clock(), bare_again=False,
            what=what,
        )  # fmt: skip

    def revoke(self, token: str, *, token_type_hint: str | None = None) -> None:
        """Revoke ``token`` at the RFC 7009 revocation endpoint, with the client's authentication.

        A 200 answer means revoked (RFC 7009 §2.2: also for a token the server
        no longer knows). Bounded by ``deadline``; revocation is idempotent, so
        transient failures are retried like a grant that spends nothing.

        .. versionadded:: 0.2.0

        :param token_type_hint: ``"refresh_token"`` or ``"access_token"``.
        :raises RevocationError: The server did not confirm (timeout, 5xx, an
            error answer): the token may still be live.
        :raises InvalidConfiguration: ``invalid_client``, or no revocation endpoint.
        """
        what = "revocation endpoint"
        until = time.monotonic() + self.deadline
        url = self.endpoint("revocation_endpoint")
        params = {"token": token}
        if token_type_hint:
            params["token_type_hint"] = token_type_hint
        data = self._authenticated(params)
        answer = self._post(url, data, f"revocation ({token_type_hint or '?'})", until, False)
        if answer.failure is None and answer.status == 200:
            return
        error = (
            failure_error(url, answer, self.deadline, what)
            if answer.failure is not None
            else error_from_answer(
                url, answer, secrets=self._secrets(data), now=self.clock(), bare_again=False,
                what=what,
            )
        )  # fmt: skip
        if isinstance(error, InvalidConfiguration):
            raise error
        raise RevocationError(
            f"{error.message}; the token may still be live at the server",
            status_code=getattr(error, "status_code", None),
            error=getattr(error, "error", None),
            error_description=getattr(error, "error_description", None),
        )

    def _authenticated(self, params: Mapping[str, str]) -> dict[str, str]:
        """``params`` plus the client's authentication in the body (post, none)."""
        data = dict(params)
        if self.auth_method != "client_secret_basic":
            data["client_id"] = self.client_id
            if self.auth_method == "client_secret_post":
                assert self._client_secret is not None  # noqa: S101  # checked in __init__
                data["client_secret"] = self._client_secret
        return data

    def _basic_auth(self) -> tuple[str, str] | None:
        if self.auth_method != "client_secret_basic":
            return None
        assert self._client_secret is not None  # noqa: S101  # checked in __init__
        # RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding.
        return (quote_plus(self.client_id, safe=""), quote_plus(self._client_secret, safe=""))

    def _secrets(self, data: Mapping[str, str]) -> list[str]:
        secrets = [data[name] for name in SECRET_PARAMS if data.get(name)]
        if self._client_secret:
            secrets.append(self._client_secret)
        return secrets

    def _post(
        self, url: str, data: Mapping[str, str], kind: str, until: float, rotating: bool
    ) -> Answer:
        """POST the form until an answer, retrying what :func:`retry_delay` allows."""
        import random  # the refresh path only: jitter for retries

        attempt = 0
        while True:  # bounded: retry_delay says None from max_attempts on
            attempt += 1
            logger.debug("%s call: %s, attempt %d", kind, url, attempt)
            answer = exchange(
                self.session, "POST", url, until=until, timeout=self.timeout,
                data=data, auth=self._basic_auth(), headers={"Accept": "application/json"},
                allow_redirects=False,  # a redirected token request could leak the grant
            )  # fmt: skip
            delay = retry_delay(
                rotating=rotating,
                failure=answer.failure,
                status=answer.status,
                retry_after=parse_retry_after(answer.headers.get("Retry-After"), now=self.clock()),
                attempt=attempt,
                remaining=until - time.monotonic(),
                jitter=random.random(),  # noqa: S311  # spreading pauses, not a secret
                max_attempts=self.max_attempts,
            )
            if delay is None:
                return answer
            logger.debug(
                "%s %s: attempt %d failed (%s); again in %.2f s",
                kind, url, attempt, answer.failure or answer.status, delay,
            )  # fmt: skip
            self._sleep(delay)

    def _endpoint_by(self, until: float) -> str:
        if self.token_url is not None:
            return self.token_url
        assert self._discovery is not None  # noqa: S101  # set whenever token_url is None
        return self._discovery.token_endpoint(self.session, until=until)

    def _remember_bare(self, refresh_token: str | None, *, bare: bool) -> bool:
        """Note whether ``refresh_token`` got a bare 400; True if it did last time too."""
        if not refresh_token:
            return False
        import hashlib

        tag = hashlib.sha256(refresh_token.encode("utf-8", "surrogatepass")).hexdigest()
        with self._session_lock:
            again = self._bare_400s.pop(tag, False)
            if bare:
                self._bare_400s[tag] = True
                while len(self._bare_400s) > _BARE_MEMORY:
                    del self._bare_400s[next(iter(self._bare_400s))]
        return bare and again

    def _forget_discovery(self) -> None:
        if self._discovery is not None:
            self._discovery.forget()
