"""The token endpoint client: POST a form, read RFC 6749 §5.1 / §5.2."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import quote_plus

import requests

from ._gate import PicklesWithoutLocks
from ._token import Token
from .exceptions import InvalidConfiguration, RefreshError, RevocationError, TokenInvalidated

if TYPE_CHECKING:
    from types import TracebackType

    from ._discovery import Discovery

logger = logging.getLogger(__name__)

#: (connect, read) seconds for every token-endpoint call; never unbounded.
DEFAULT_TIMEOUT: Final = (5.0, 30.0)
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
#: OAuth errors that mean our request or registration is wrong (RFC 6749 §5.2).
_CONFIG_ERRORS: Final = frozenset(
    {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
)
_MAX_DESCRIPTION: Final = 200


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_json(response: requests.Response) -> Any:
    """Decode a JSON body defensively; None when it is not JSON.

    Rejects ``NaN``/``Infinity`` and deep nesting, and never lets the decoder's
    error (whose ``.doc`` holds the whole body, secrets included) escape.
    """
    try:
        return json.loads(response.content, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


def _short(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:_MAX_DESCRIPTION]


class OAuthClient(PicklesWithoutLocks):
    """A client of one authorization server's token endpoint.

    :param token_url: The token endpoint. Give this or ``issuer``.
    :param issuer: The issuer URL; the token endpoint is discovered lazily
        (OIDC discovery, then RFC 8414) on the first token-endpoint call.
    :param client_id: The registered client id.
    :param client_secret: The client secret, for confidential clients.
    :param auth_method: ``client_secret_basic`` (default with a secret),
        ``client_secret_post`` or ``none`` (default without one).
    :param timeout: Seconds, or a ``(connect, read)`` pair, for every call.
        Default ``(5, 30)``.
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
        ``client_id``, an unknown ``auth_method`` or one without its secret,
        or an endpoint URL or ``issuer`` that is not https (plain http:
        loopback only).

    .. versionadded:: 0.2.0
       ``authorization_url``, ``device_authorization_url``, ``revocation_url``.
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
        authorization_url: str | None = None,
        device_authorization_url: str | None = None,
        revocation_url: str | None = None,
    ) -> None:
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
        self.clock = clock
        self._session = session
        self._session_lock = threading.Lock()
        self._discovery: Discovery | None = None
        if self.token_url is None:
            from ._discovery import Discovery

            assert issuer  # noqa: S101  # checked above
            # Nothing is fetched here: discovery waits for the first token call.
            self._discovery = Discovery(
                issuer, ttl=discovery_ttl, cache_dir=cache_dir, timeout=timeout, clock=clock
            )
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
        if self.token_url is not None:
            return self.token_url
        assert self._discovery is not None  # noqa: S101  # set whenever token_url is None
        return self._discovery.token_endpoint(self.session)

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

        :raises TokenInvalidated: ``invalid_grant``: the grant is dead.
        :raises InvalidConfiguration: ``invalid_client`` and other setup errors.
        :raises RefreshError: Anything transient: timeouts, 5xx, 429, HTML or
            non-JSON bodies, a body without ``access_token``.
        """
        url = self.token_endpoint()
        logger.debug("token endpoint call: %s (%s)", url, grant or params.get("grant_type", "?"))
        with self._post_form(url, params, "token endpoint") as response:
            if response.status_code == 404:
                self._forget_discovery()
            return self._parse(url, response)

    def device_authorization(self, params: Mapping[str, str]) -> dict[str, Any]:
        """POST an RFC 8628 §3.1 device authorization request; the JSON answer.

        .. versionadded:: 0.2.0

        :raises InvalidConfiguration: ``invalid_client``, ``invalid_scope``, no endpoint.
        :raises RefreshError: A transient failure or an unusable answer.
        """
        url = self.endpoint("device_authorization_endpoint")
        logger.debug("device authorization request: %s", url)
        with self._post_form(url, params, "device authorization endpoint") as response:
            body = parse_json(response)
            if response.status_code == 200 and isinstance(body, dict):
                return body
            if response.status_code == 200:
                raise RefreshError(
                    f"device authorization endpoint {url} answered 200 with a body that is "
                    "not a JSON object",
                    status_code=200,
                )
            self._refuse(url, response, body, "device authorization endpoint")

    def revoke(self, token: str, *, token_type_hint: str | None = None) -> None:
        """Revoke ``token`` at the RFC 7009 revocation endpoint, with the client's authentication.

        A 200 answer means revoked (RFC 7009 §2.2: also for a token the server
        no longer knows).

        .. versionadded:: 0.2.0

        :param token_type_hint: ``"refresh_token"`` or ``"access_token"``.
        :raises RevocationError: The server did not confirm (timeout, 5xx, an
            error answer): the token may still be live.
        :raises InvalidConfiguration: ``invalid_client``, or no revocation endpoint.
        """
        url = self.endpoint("revocation_endpoint")
        params = {"token": token}
        if token_type_hint:
            params["token_type_hint"] = token_type_hint
        logger.debug("revocation request: %s (%s)", url, token_type_hint or "?")
        try:
            with self._post_form(url, params, "revocation endpoint") as response:
                if response.status_code == 200:
                    return
                self._refuse(url, response, parse_json(response), "revocation endpoint")
        except RefreshError as exc:
            raise RevocationError(
                f"{exc.message}; the token may still be live at the server",
                status_code=exc.status_code,
                error=exc.error,
                error_description=exc.error_description,
            ) from None

    def _post_form(self, url: str, params: Mapping[str, str], what: str) -> requests.Response:
        """POST ``params`` with the client's authentication; transport failures as RefreshError."""
        data = dict(params)
        auth: tuple[str, str] | None = None
        if self.auth_method == "client_secret_basic":
            assert self._client_secret is not None  # noqa: S101  # checked in __init__
            # RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding.
            auth = (quote_plus(self.client_id, safe=""), quote_plus(self._client_secret, safe=""))
        else:
            data["client_id"] = self.client_id
            if self.auth_method == "client_secret_post":
                assert self._client_secret is not None  # noqa: S101  # checked in __init__
                data["client_secret"] = self._client_secret
        try:
            return self.session.post(
                url,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,  # a redirected token request could leak the grant
            )
        except requests.Timeout:
            raise RefreshError(f"{what} {url} timed out; try again") from None
        except requests.RequestException as exc:
            self._forget_discovery()
            raise RefreshError(
                f"{what} {url} could not be reached ({type(exc).__name__}); try again"
            ) from None

    def _forget_discovery(self) -> None:
        # A cached document may name an endpoint that has moved: discover it
        # again on the next call instead of failing until the cache expires.
        if self._discovery is not None:
            self._discovery.forget()

    def _parse(self, url: str, response: requests.Response) -> Token:
        status = response.status_code
        body = parse_json(response)
        if status == 200:
            if not isinstance(body, dict):
                ctype = response.headers.get("Content-Type", "none")
                raise RefreshError(
                    f"token endpoint {url} answered 200 with a body that is not a JSON object "
                    f"(Content-Type {ctype}); a proxy or captive portal may be in the way",
                    status_code=status,
                )
            try:
                return Token.from_response(body, now=self.clock())
            except ValueError as exc:
                raise RefreshError(
                    f"token endpoint {url} answered 200 but {exc}", status_code=status
                ) from None
        self._refuse(url, response, body, "token endpoint")

    def _refuse(self, url: str, response: requests.Response, body: Any, what: str) -> NoReturn:
        """Raise the typed error for an RFC 6749 §5.2 error answer (or a non-OAuth one)."""
        status = response.status_code
        error = _short(body.get("error")) if isinstance(body, dict) else None
        description = _short(body.get("error_description")) if isinstance(body, dict) else None
        detail = f"{status} {error}" if error else str(status)
        if description:
            detail += f": {description}"
        if error == "invalid_grant" and status in (400, 401):
            raise TokenInvalidated(
                f"{what} {url} rejected the grant ({detail}); log in again",
                invalidated_at=self.clock(),
            )
        if error in _CONFIG_ERRORS:
            raise InvalidConfiguration(
                f"{what} {url} refused the client ({detail}); check client_id, "
                "client_secret, auth_method and scope",
                response=response,
            )
        if status == 429 or status >= 500:
            hint = "try again later"
        elif error is None:
            hint = "not an OAuth error answer; a proxy may be in the way"
        else:
            hint = "the request was refused"
        raise RefreshError(
            f"{what} {url} answered {detail} ({hint})",
            status_code=status,
            error=error,
            error_description=description,
        )
