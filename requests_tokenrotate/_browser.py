"""Browser login: authorization code + PKCE (RFC 7636, S256) with a loopback redirect (RFC 8252).

The authorization request goes out through Python's :mod:`webbrowser` (so
``$BROWSER`` is honoured) and is always printed as well, for SSH sessions. The
response comes back to a one-shot listener on ``127.0.0.1`` (``_loopback``);
``state`` is checked, the RFC 9207 ``iss`` parameter too, and only then is the
code exchanged (with the PKCE verifier) and the token stored through the gate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from ._login import finish, login_params, resolve
from .exceptions import LoginError, TokenInvalidated

if TYPE_CHECKING:
    from ._endpoint import OAuthClient
    from ._source import TokenSource
    from ._token import Token

logger = logging.getLogger(__name__)

#: Seconds to wait for the user to finish in the browser.
DEFAULT_BROWSER_TIMEOUT: Final = 300.0
_MAX_DESCRIPTION: Final = 200


def pkce_pair() -> tuple[str, str]:
    """A fresh ``(code_verifier, code_challenge)`` for S256 (RFC 7636 §4.1, §4.2)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters of the unreserved set
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def print_url(url: str) -> None:
    """The default announcement: the URL on stderr, for when no browser opens."""
    print(f"Opening a browser to log in. If none opens, visit:\n  {url}", file=sys.stderr)
    sys.stderr.flush()


def _open_in_browser(url: str) -> object:
    import webbrowser  # imported on demand: ~10 ms, and only a login needs it

    return webbrowser.open(url)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _short(value: str | None) -> str | None:
    return None if value is None else value[:_MAX_DESCRIPTION]


class _Callback:
    """Validates the authorization response (state, iss, error) as it arrives."""

    def __init__(self, state: str, issuer: str | None, iss_required: bool) -> None:
        self.state, self.issuer, self.iss_required = state, issuer, iss_required
        self.error: LoginError | None = None

    def __call__(self, params: dict[str, str]) -> str | None:
        self.error = self._check(params)
        return None if self.error is None else self.error.message

    def _check(self, params: dict[str, str]) -> LoginError | None:
        # RFC 6749 §10.12: a response without our state may be forged (CSRF).
        if not hmac.compare_digest(params.get("state", "").encode(), self.state.encode()):
            return LoginError(
                "the login answer did not carry this login's state; nothing was stored",
                error="state_mismatch",
            )
        iss = params.get("iss")
        # RFC 9207 §2.4: a mix-up defence (required once the server advertises it).
        expected = self.issuer
        if (
            expected is not None
            and (iss is not None or self.iss_required)
            and (iss is None or iss.rstrip("/") != expected.rstrip("/"))
        ):
            return LoginError(
                "the login answer came from another issuer than the one asked; nothing was stored",
                error="issuer_mismatch",
            )
        if "error" in params:
            error = _short(params["error"]) or "error"
            description = _short(params.get("error_description"))
            text = f"the authorization server answered {error}"
            return LoginError(
                f"{text}: {description}" if description else text,
                error=error,
                error_description=description,
            )
        if not params.get("code"):
            return LoginError("the login answer carried no code", error="invalid_request")
        return None


def login_browser(
    target: TokenSource | OAuthClient,
    *,
    scope: str | None = None,
    audience: str | None = None,
    resource: str | None = None,
    extra: Mapping[str, str] | None = None,
    client: OAuthClient | None = None,
    open_browser: Callable[[str], object] | None = _open_in_browser,
    announce: Callable[[str], object] | None = print_url,
    timeout: float = DEFAULT_BROWSER_TIMEOUT,
    redirect_path: str = "/callback",
    port: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> Token:
    """Log in through the user's browser (authorization code + PKCE S256) and store the token.

    :param target: A :class:`TokenSource` (the token is stored under its key)
        or an :class:`OAuthClient` (the token is only returned).
    :param scope: The scope to ask for (``offline_access`` for a refresh token
        on most servers; a warning is logged when none comes back).
    :param audience: An ``audience`` parameter, for servers that want one.
    :param resource: A resource indicator (RFC 8707).
    :param extra: More authorization parameters (``prompt``, ``login_hint``, ...).
    :param client: Log in with this client instead of the source's grant's.
        The authorization endpoint is ``OAuthClient(authorization_url=...)``
        or discovered.
    :param open_browser: Opens the URL; default :func:`webbrowser.open` (which
        honours ``$BROWSER``), run in a thread so a browser command that does
        not return cannot hold the login up. None: only announce the URL.
    :param announce: Shows the URL (default: printed on stderr); None: silent.
    :param timeout: Seconds to wait for the browser's answer (default 300).
    :param redirect_path: The path of the loopback redirect URI.
    :param port: The loopback port; 0 (default) picks an ephemeral one.
    :param clock: Monotonic seconds for the timeout (tests inject one).
    :returns: The new token (stored, when ``target`` is a source).
    :raises LoginError: The answer's ``state`` or ``iss`` did not match, it
        carried an ``error`` (e.g. ``access_denied``), the code was refused, or
        no answer came within ``timeout``. Nothing is stored then.
    :raises InvalidConfiguration: No authorization endpoint, or the server
        refused the client.
    :raises RefreshError: The token endpoint failed transiently.

    .. versionadded:: 0.2.0
    """
    client, source = resolve(target, client)
    endpoint = client.endpoint("authorization_endpoint")
    metadata = client.metadata()
    issuer = metadata.get("issuer") or client.issuer
    iss_required = metadata.get("authorization_response_iss_parameter_supported") is True
    verifier, challenge = pkce_pair()
    callback = _Callback(secrets.token_urlsafe(32), issuer, iss_required)
    try:
        from ._loopback import CallbackListener  # http.server: only a browser login needs it

        listener = CallbackListener(callback, path=redirect_path, port=port)
    except OSError as exc:
        raise LoginError(
            f"cannot listen on 127.0.0.1:{port} for the login answer ({exc.strerror})",
            error="listener",
        ) from None
    try:
        redirect_uri = listener.redirect_uri
        params: dict[str, Any] = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            **login_params(scope, audience, resource, extra),
            "state": callback.state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        url = _with_query(endpoint, params)
        if announce is not None:
            announce(url)
        if open_browser is not None:
            threading.Thread(
                target=_run_browser, args=(open_browser, url), name="login-browser", daemon=True
            ).start()
        arrived = listener.wait(clock() + timeout, clock)
    finally:
        listener.close()
    if not arrived:
        raise LoginError(f"no login answer within {timeout:g} s; try again", error="timeout")
    if callback.error is not None:
        raise callback.error
    assert listener.params is not None  # noqa: S101  # arrived
    exchange = {
        "grant_type": "authorization_code",
        "code": listener.params["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if resource:
        exchange["resource"] = resource  # RFC 8707 §2.2
    try:
        token = client.request_token(exchange, grant="authorization_code")
    except TokenInvalidated as exc:
        raise LoginError(
            f"the server refused the authorization code ({exc.message}); try again",
            error="invalid_grant",
        ) from None
    return finish(token, source, "browser")


def _run_browser(open_browser: Callable[[str], object], url: str) -> None:
    try:
        opened = open_browser(url)
    except Exception as exc:  # the URL was printed: the user can still go on
        logger.warning("could not open a browser (%s); open the URL by hand", type(exc).__name__)
        return
    if opened is False:
        logger.warning("could not open a browser; open the URL printed above by hand")
