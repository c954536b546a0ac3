"""TokenRotateAuth: the token for ``auth=`` and ``Session.auth``, retried through a hook."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from requests.auth import AuthBase

from ._body import IN_MEMORY, is_replayable
from ._transport import (
    DEFAULT_COOLDOWN,
    DEFAULT_HEADER,
    DEFAULT_REFRESH_ON,
    DEFAULT_SCHEME,
    Origin,
    Transport,
    origin_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from requests import PreparedRequest, Response

    from ._source import RefreshPolicy, TokenSource
    from ._token import Token

__all__ = ["TokenRotateAuth"]

logger = logging.getLogger(__name__)


class TokenRotateAuth(AuthBase):
    """An :class:`~requests.auth.AuthBase` that sends ``source``'s token::

        requests.get(url, auth=rt.TokenRotateAuth(source))
        session.auth = rt.TokenRotateAuth(source, origins=["https://api.example.com"])

    The token is attached when requests prepares the request; a response hook
    refreshes and resends once after a stale-token answer, as
    :class:`~requests.auth.HTTPDigestAuth` does (the first response ends up
    in ``history``). The rules are those of :class:`TokenRotateAdapter`: the
    same arguments, the same decision procedure.

    Origins: with ``origins=None`` (the default) the token goes to whatever URL
    the auth is applied to, as with any requests auth; a redirect hop keeps it
    only while it stays on that exact origin (scheme, host and port), and only
    a response from that origin can trigger a refresh. requests strips
    ``Authorization`` on a redirect to another host and never re-applies the
    auth, so the token is not put back. With ``origins=`` set, a request to any
    other origin is left untouched; prefer that for a ``Session.auth`` shared
    by several hosts, or mount a :class:`TokenRotateAdapter`.

    Thread-safe: the per-request state (the token sent, one retry at most)
    lives in the hook registered on each prepared request, not on this object.

    :param source: The :class:`TokenSource` that owns the token.
    :param origins: URLs whose origins get the token; None: any (see above).
    :param refresh_on: See :class:`TokenRotateAdapter` (default 401, 403).
    :param refresh_margin: See :class:`TokenRotateAdapter`.
    :param header: See :class:`TokenRotateAdapter` (default ``Authorization``).
    :param scheme: See :class:`TokenRotateAdapter` (default ``"Bearer"``).
    :param cooldown: See :class:`TokenRotateAdapter` (default 60 s).
    :raises InvalidConfiguration: A bad origin, header, scheme, status code,
        margin or cooldown.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        origins: str | Iterable[str] | None = None,
        refresh_on: int | Iterable[int] = DEFAULT_REFRESH_ON,
        refresh_margin: RefreshPolicy | float | None = None,
        header: str = DEFAULT_HEADER,
        scheme: str | None = DEFAULT_SCHEME,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        self._transport = Transport(
            source,
            origins=origins,
            refresh_on=refresh_on,
            refresh_margin=refresh_margin,
            header=header,
            scheme=scheme,
            cooldown=cooldown,
        )

    @property
    def source(self) -> TokenSource:
        """The :class:`TokenSource` whose token this auth sends."""
        return self._transport.source

    def __repr__(self) -> str:
        return f"<TokenRotateAuth {self._transport!r}>"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        transport = self._transport
        url = r.url or ""
        if transport.origins is not None and not transport.is_allowed(url):
            return r
        body = r.body
        replayable = body is None or isinstance(body, IN_MEMORY) or is_replayable(r)
        sent = transport.attach(r, replayable)
        r.register_hook("response", _Exchange(transport, sent, url))
        return r


class _Exchange:
    """The response hook of one request: what was sent where, and one retry at most."""

    __slots__ = ("_origin", "retried", "sent", "transport", "url")

    def __init__(self, transport: Transport, sent: Token, url: str) -> None:
        self.transport = transport
        self.sent = sent
        self.url = url
        self.retried = False
        self._origin: Origin | None = None

    def allows(self, url: str) -> bool:
        """True if a request to ``url`` may carry (or refresh) this exchange's token."""
        transport = self.transport
        if transport.origins is not None:
            return transport.is_allowed(url)
        if self._origin is None:
            self._origin = origin_of(self.url)
        return self._origin is not None and origin_of(url) == self._origin

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
            or not self.allows(request.url or "")
            or not transport.carries(request, sent)
            or not transport.is_stale(response, sent)
        ):
            if response.is_redirect:
                transport.forget_on_redirect(response, sent, self.allows)
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
            allows=self.allows,
        )
