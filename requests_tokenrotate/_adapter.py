"""TokenRotateAdapter: an HTTPAdapter that attaches and rotates the bearer token."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, DEFAULT_RETRIES, HTTPAdapter
from requests.models import PreparedRequest

from ._body import IN_MEMORY, is_replayable
from ._transport import Transport, TransportOptions

if TYPE_CHECKING:
    from requests import Response, Session
    from typing_extensions import Unpack
    from urllib3.util.retry import Retry

    from ._source import TokenSource

__all__ = ["AdapterOptions", "TokenRotateAdapter", "mount"]

logger = logging.getLogger(__name__)


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
    netrc entry) is sent as it is, and its 401 is not refreshed: the caller's
    credential wins. A server that rejects even a token a refresh has just
    obtained spends at most one more refresh per ``cooldown``, not one per
    request.

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

    __attrs__: ClassVar[list[str]] = [*HTTPAdapter.__attrs__, "_transport"]  # type: ignore[misc]

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
        self._transport = Transport(source, **options)
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=max_retries,
            pool_block=pool_block,
        )

    @property
    def source(self) -> TokenSource:
        """The :class:`TokenSource` whose token this adapter sends."""
        return self._transport.source

    def __repr__(self) -> str:
        return f"<TokenRotateAdapter {self._transport!r}>"

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
        transport = self._transport
        url = request.url or ""
        if not transport.is_allowed(url):
            transport.strip(request)  # a same-session hop may have copied it
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        if transport.has_callers_header(request.headers):
            # The caller's own credential: sent as it is, never refreshed.
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        body = request.body
        replayable = body is None or isinstance(body, IN_MEMORY) or is_replayable(request)
        sent = transport.attach(request, replayable)
        response = super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
        if response.status_code not in transport.watched:
            return response  # the hot path ends here
        if not transport.is_stale(response, sent):
            if response.is_redirect:
                transport.forget_on_redirect(response, sent, transport.is_allowed)
            return response
        resend = super().send

        def send_again(prepared: PreparedRequest) -> Response:
            return resend(
                prepared, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )

        return transport.recover(
            response, sent, replayable=replayable, send=send_again, allows=transport.is_allowed
        )


def mount(
    session: Session, prefix: str, source: TokenSource, **options: Unpack[AdapterOptions]
) -> TokenRotateAdapter:
    """Mount a :class:`TokenRotateAdapter` on ``session`` for ``prefix``.

    The adapter's allowed origin is ``prefix``'s scheme, host and port (unless
    ``origins=`` is passed), checked on the parsed URL of every request, so a
    look-alike host that matches the prefix as a string gets no token::

        rt.mount(session, "https://api.example.com/", source)

    :param options: Passed to :class:`TokenRotateAdapter` (``refresh_on``,
        ``header``, ``max_retries``, ...); checked by type checkers
        (:class:`AdapterOptions`).
    :returns: The mounted adapter.
    :raises InvalidConfiguration: ``prefix`` is not an absolute http(s) URL.
    """
    options.setdefault("origins", prefix)
    adapter = TokenRotateAdapter(source, **options)
    session.mount(prefix, adapter)
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
