"""TokenRotateAuth: the token for ``auth=`` and ``Session.auth``, retried through a hook."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from requests.auth import AuthBase

from ._body import IN_MEMORY, is_replayable
from ._transport import Transport, TransportOptions

if TYPE_CHECKING:
    from requests import PreparedRequest, Response
    from typing_extensions import Unpack

    from ._source import TokenSource
    from ._token import Token

__all__ = ["TokenRotateAuth"]

logger = logging.getLogger(__name__)


class TokenRotateAuth(AuthBase):
    """An :class:`~requests.auth.AuthBase` that sends ``source``'s token::

        requests.get(url, auth=rt.TokenRotateAuth(source, origins=url))
        session.auth = rt.TokenRotateAuth(source, origins=["https://api.example.com"])

    The token is attached when requests prepares the request; a response hook
    refreshes and resends once after a stale-token answer, as
    :class:`~requests.auth.HTTPDigestAuth` does (the first response ends up
    in ``history``). The rules are those of :class:`TokenRotateAdapter`: the
    same arguments, the same decision procedure.

    Origins: ``origins=`` is required, as for the adapter: a request to any
    other origin is left untouched (no token, no hook), and a redirect hop
    keeps the token only while it stays on an allowed origin. For a one-off
    call, ``origins=url`` works (the path is ignored). A request that already
    carries the token header with a value this auth did not set is left as
    it is and never refreshed.

    Thread-safe: the per-request state (the token sent, one retry at most)
    lives in the hook registered on each prepared request, not on this object.

    :param source: The :class:`TokenSource` that owns the token.
    :param origins: URLs whose origins get the token (required; see above).
    :param refresh_on: See :class:`TokenRotateAdapter` (default 401, 403).
    :param refresh_margin: See :class:`TokenRotateAdapter`.
    :param header: See :class:`TokenRotateAdapter` (default ``Authorization``).
    :param scheme: See :class:`TokenRotateAdapter` (default ``"Bearer"``).
    :param cooldown: See :class:`TokenRotateAdapter` (default 60 s).
    :raises InvalidConfiguration: No ``origins``, or a bad origin, header,
        scheme, status code, margin or cooldown.
    :raises TypeError: An unknown keyword.

    .. versionchanged:: 0.2.0 ``origins`` is required; it used to default to
       every URL the auth was applied to.
    """

    def __init__(self, source: TokenSource, **options: Unpack[TransportOptions]) -> None:
        self._transport = Transport(source, **options)

    @property
    def source(self) -> TokenSource:
        """The :class:`TokenSource` whose token this auth sends."""
        return self._transport.source

    def __repr__(self) -> str:
        return f"<TokenRotateAuth {self._transport!r}>"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        transport = self._transport
        url = r.url or ""
        if not transport.is_allowed(url) or transport.has_callers_header(r.headers):
            return r  # another origin, or the caller's own credential: left as it is
        body = r.body
        replayable = body is None or isinstance(body, IN_MEMORY) or is_replayable(r)
        sent = transport.attach(r, replayable)
        r.register_hook("response", _Exchange(transport, sent))
        return r


class _Exchange:
    """The response hook of one request: what was sent, and one retry at most."""

    __slots__ = ("retried", "sent", "transport")

    def __init__(self, transport: Transport, sent: Token) -> None:
        self.transport = transport
        self.sent = sent
        self.retried = False

    def __call__(self, response: Response, **kwargs: Any) -> Response:
        transport = self.transport
        if response.status_code not in transport.watched:
            return response
        request = response.request
        if request is None:
            return response
        sent = self.sent
        if (
            self.retried
            or not transport.is_allowed(request.url or "")
            or not transport.carries(request, sent)
            or not transport.is_stale(response, sent)
        ):
            if response.is_redirect:
                transport.forget_on_redirect(response, sent, transport.is_allowed)
            return response
        self.retried = True
        connection = response.connection

        def send_again(prepared: PreparedRequest) -> Response:
            resent: Response = connection.send(prepared, **kwargs)
            return resent

        return transport.recover(
            response,
            sent,
            replayable=is_replayable(request),
            send=send_again,
            allows=transport.is_allowed,
        )
