"""TokenRotateAdapter: an HTTPAdapter that attaches and rotates the bearer token.

A shell: it does the sending and asks :class:`BearerPolicy` (decisions) and
:mod:`._recovery` (requests mechanics) everything else.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlsplit

from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, DEFAULT_RETRIES, HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from requests.models import PreparedRequest
from requests.utils import get_auth_from_url, get_netrc_auth

from . import _recovery
from ._policy import BearerPolicy, TransportOptions
from ._urls import show_origin

if TYPE_CHECKING:
    from collections.abc import Callable

    from requests import Response, Session
    from typing_extensions import Unpack
    from urllib3.util.retry import Retry

    from ._source import TokenSource
    from ._token import Token

__all__ = ["AdapterOptions", "MountedAuth", "TokenRotateAdapter", "mount"]

logger = logging.getLogger(__name__)

_MAX_VERDICTS: Final = 512


class AdapterOptions(TransportOptions, total=False):
    """The options of :func:`mount`: the transport's and ``HTTPAdapter``'s."""

    pool_connections: int
    pool_maxsize: int
    max_retries: int | Retry
    pool_block: bool


class TokenRotateAdapter(HTTPAdapter):
    """An :class:`~requests.adapters.HTTPAdapter` that sends ``source``'s token.

    On every send the request's parsed origin (scheme, host, port) is checked:
    only an allowed origin gets the token. ``Session.mount`` matches prefixes as
    plain strings, so ``https://api.example.com`` also routes
    ``https://api.example.com.evil.net/`` here; such a request, and any redirect
    hop to another origin, goes out untouched and without the token.

    A response that says the token is stale (a 401; a 403 whose Bearer
    challenge says ``invalid_token``; a bare 403, at most once per
    ``cooldown``) triggers one :meth:`TokenSource.refresh` with the token that
    was sent, then one resend if the body can be replayed (the first response
    is then in the new one's ``history``). A body that cannot be replayed (a
    generator, a pipe) is never resent: the token is refreshed before sending
    when it expires within the refresh margin, and after a 401 the token is
    refreshed and the 401 returned, so that the caller's own retry works.
    A ``403`` with ``insufficient_scope`` never refreshes.

    A request that already carries the token header with a value this
    adapter did not set (the caller's ``headers=``, another ``auth=``, a
    netrc entry on a session without :class:`MountedAuth`) is sent as it is,
    and its 401 is not refreshed: the caller's credential wins. A server that
    rejects even a token a refresh has just obtained spends at most one more
    refresh per ``cooldown``, not one per request.

    Errors from the source (``NotLoggedIn``, ``TokenInvalidated``,
    ``RefreshError``, ``LockTimeout``) propagate as they are; they are
    :class:`requests.RequestException` subclasses.

    :param source: The :class:`TokenSource` that owns the token.
    :param origins: The origins that get the token: URLs such as
        ``"https://api.example.com"`` (path ignored; default ports normalised,
        so ``https://h`` and ``https://h:443`` are the same). Required
        (:func:`mount` takes it from the prefix): without it no request could
        be told apart from a look-alike.

        .. versionchanged:: 0.2.0 Required; it used to pin the first request's origin.
    :param refresh_on: Statuses that may mean a stale token (default 401 and
        403); a 403 also needs ``error="invalid_token"`` or no Bearer error.
    :param refresh_margin: Seconds before expiry at which a token is refreshed
        before sending a body that cannot be replayed; None (default) scales
        with the token's lifetime (10 %, 30 s - 300 s, at most half of it).
    :param header: The header that carries the token (default ``Authorization``).
    :param scheme: Written before the token (default ``"Bearer"``); ``""`` or
        None sends the bare token, e.g. ``header="X-Authorization", scheme=""``.
        The token's ``token_type`` is not used: servers spell it in many ways.
    :param cooldown: After a bare 403 spent a refresh, more bare 403s are taken
        as permission errors for this many seconds, and a token younger than
        this is never refreshed on one; a token a refresh obtained that was
        rejected at once is not refreshed again for this long either
        (default 60; 0 refreshes on every one).
    :param pool_connections: As for :class:`~requests.adapters.HTTPAdapter`.
    :param pool_maxsize: As for :class:`~requests.adapters.HTTPAdapter`.
    :param max_retries: As for :class:`~requests.adapters.HTTPAdapter`; a
        :class:`urllib3.util.Retry` on 503 composes with the 401 retry.
    :param pool_block: As for :class:`~requests.adapters.HTTPAdapter`.
    :raises InvalidConfiguration: No ``origins``, or a bad origin, header,
        scheme, status code, margin or cooldown.
    :raises TypeError: An unknown keyword.
    """

    __attrs__: ClassVar[list[str]] = [*HTTPAdapter.__attrs__, "_policy"]  # type: ignore[misc]

    def __init__(
        self,
        source: TokenSource,
        *,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        max_retries: int | Retry = DEFAULT_RETRIES,
        pool_block: bool = DEFAULT_POOLBLOCK,
        **options: Unpack[TransportOptions],
    ) -> None:
        self._policy = BearerPolicy(source, **options)
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=max_retries,
            pool_block=pool_block,
        )

    @property
    def source(self) -> TokenSource:
        """The :class:`TokenSource` whose token this adapter sends."""
        return self._policy.source

    def __repr__(self) -> str:
        return f"<TokenRotateAdapter {self._policy!r}>"

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        """Send ``request`` with the token if its origin is allowed; see the class docs."""
        policy = self._policy
        url = request.url or ""
        store = getattr(request.headers, "_store", None)
        if request.body is None and store is not None and policy.header_key not in store:
            plan = policy.warm  # the last token sent and its header value
            if (
                plan is not None
                # TokenSource.peek() without the call: the same token, still fresh
                and (fresh := policy.source._fresh)[0] is plan[0]
                and (fresh[1] is None or fresh[1] > policy.source.clock())
                and policy.allowed_urls.get(url)
            ):
                store[policy.header_key] = (policy.header, plan[1])
                response = super().send(
                    request, stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
                )
                if response.status_code not in policy.watched:
                    return response
                return self._after(response, plan[0], True, stream, timeout, verify, cert, proxies)
        sent, replayable, current = _recovery.attach(policy, request)
        if sent is None and current is not None and policy.is_issued(current):
            _recovery.strip(policy, request)  # another origin: a same-session hop copied ours
        response = super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
        if sent is None or response.status_code not in policy.watched:
            return response  # not ours (another origin, the caller's credential), or fine
        return self._after(response, sent, replayable, stream, timeout, verify, cert, proxies)

    def _after(self, response: Response, sent: Token, replayable: bool, stream: bool,
               timeout: float | tuple[float | None, float | None] | None, verify: bool | str,
               cert: str | tuple[str, str] | None, proxies: dict[str, str] | None,
    ) -> Response:  # fmt: skip
        """Look at an answer whose status is watched: refresh and resend, or strip."""
        policy = self._policy
        if not _recovery.is_stale(policy, response, sent):
            if response.is_redirect:
                _recovery.forget_on_redirect(policy, response, sent)
            return response
        resend = super().send

        def send_again(prepared: PreparedRequest) -> Response:
            return resend(
                prepared, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )

        return _recovery.recover(policy, response, sent, replayable=replayable, send=send_again)


def mount(
    session: Session, prefix: str, source: TokenSource, **options: Unpack[AdapterOptions]
) -> TokenRotateAdapter:
    """Mount a :class:`TokenRotateAdapter` on ``session`` for ``prefix``.

    The adapter's allowed origin is ``prefix``'s scheme, host and port (unless
    ``origins=`` is passed), checked on the parsed URL of every request, so a
    look-alike host that matches the prefix as a string gets no token::

        rt.mount(session, "https://api.example.com/", source)

    A session without ``auth`` also gets one that marks the mounted origins as
    authenticated by the adapter, as ``auth=`` would: requests then skips its
    own credential lookup for them (the URL's user info, and ``~/.netrc`` when
    ``trust_env``), a few µs per request, and a netrc entry for the API host no
    longer replaces the token. Every other URL is treated as before: netrc,
    then the URL's user info. A session whose ``auth`` is already set keeps it
    (and that auth's header, being the caller's, wins on the mounted origins).

    :param options: Passed to :class:`TokenRotateAdapter` (``refresh_on``,
        ``header``, ``max_retries``, ...); checked by type checkers
        (:class:`AdapterOptions`).
    :returns: The mounted adapter.
    :raises InvalidConfiguration: ``prefix`` is not an absolute http(s) URL.
    """
    options.setdefault("origins", prefix)
    adapter = TokenRotateAdapter(source, **options)
    session.mount(prefix, adapter)
    MountedAuth.install(session, adapter)
    if not prefix.isascii():
        # Session.get_adapter compares strings, and requests sends the host
        # IDNA-encoded: mount that spelling too, or nothing would route here.
        prepared = PreparedRequest()
        prepared.prepare_url(prefix, None)
        encoded = prepared.url or prefix
        if encoded.endswith("/") and not prefix.endswith("/") and urlsplit(prefix).path == "":
            encoded = encoded[:-1]
        session.mount(encoded, adapter)
    return adapter


class MountedAuth(AuthBase):
    """``Session.auth`` as :func:`mount` sets it on a session that had none.

    A request to an origin of a mounted :class:`TokenRotateAdapter` is left as
    it is: the adapter attaches the token. Any other request gets what requests
    gives a session without ``auth`` (``Session.prepare_request`` and
    ``PreparedRequest.prepare_auth``): the netrc entry for its host when the
    session trusts the environment, else the user info in its URL, as Basic.

    Why it exists: requests looks for credentials on every request of a
    session without ``auth`` (it parses the URL for user info and, with
    ``trust_env``, stats ``~/.netrc``), which costs more than everything the
    adapter does per request, and a netrc entry for the API host would
    replace the token. Setting ``session.auth`` to anything else (or None)
    is fine: the adapter keeps working, with requests' lookups back.

    .. versionadded:: 0.2.0
    """

    def __init__(self, session: Session) -> None:
        self._session: Callable[[], Session | None] = weakref.ref(session)
        self._policies: tuple[BearerPolicy, ...] = ()
        self._verdicts: dict[str, bool] = {}  # URL -> an adapter's origin

    @classmethod
    def install(cls, session: Session, adapter: TokenRotateAdapter) -> None:
        """Make ``adapter``'s origins ours on ``session``, if its ``auth`` is None or ours."""
        auth = session.auth
        if auth is None:
            auth = session.auth = cls(session)
        elif not isinstance(auth, cls) or auth._session() is not session:
            return  # the caller's own auth: left alone
        auth._policies = (*auth._policies, adapter._policy)
        auth._verdicts = {}

    def __getstate__(self) -> dict[str, Any]:
        # A pickled session comes back without this link; its trust_env is then
        # taken to be requests' default (True).
        return {"policies": self._policies}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._session = _no_session
        self._policies = state["policies"]
        self._verdicts = {}

    def __repr__(self) -> str:
        origins = sorted({show_origin(o) for policy in self._policies for o in policy.origins})
        return f"<requests_tokenrotate.MountedAuth origins={origins}>"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        url = r.url or ""
        ours = self._verdicts.get(url)
        if ours is None:
            ours = any(policy.is_allowed(url) for policy in self._policies)
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts = {}
            self._verdicts[url] = ours
        if ours:
            return r  # the adapter's
        session = self._session()
        credentials = get_netrc_auth(url) if session is None or session.trust_env else None
        if not credentials:
            from_url = get_auth_from_url(url)
            credentials = from_url if any(from_url) else None
        if credentials:
            return HTTPBasicAuth(*credentials)(r)
        return r


def _no_session() -> None:
    return None
