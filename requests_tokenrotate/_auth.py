"""TokenRotateAuth: the token for ``auth=`` and ``Session.auth``, retried through a hook.

A shell, like the adapter: :class:`BearerPolicy` decides, :mod:`._recovery`
handles requests' objects.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from requests.auth import AuthBase

from . import _recovery
from ._body import is_replayable
from ._policy import BearerPolicy, TransportOptions

if TYPE_CHECKING:
    from requests import PreparedRequest, Response
    from typing_extensions import Unpack

    from ._source import TokenSource

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
    lives in each prepared request (its header and its hook list), not on
    this object.

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
        self._policy = BearerPolicy(source, **options)

    @property
    def source(self) -> TokenSource:
        """The :class:`TokenSource` whose token this auth sends."""
        return self._policy.source

    def __repr__(self) -> str:
        return f"<TokenRotateAuth {self._policy!r}>"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        policy = self._policy
        url = r.url or ""
        store = getattr(r.headers, "_store", None)
        if r.body is None and store is not None and policy.header_key not in store:
            plan = policy.warm  # the last token sent and its header value
            if (
                plan is not None
                # TokenSource.peek() without the call: the same token, still fresh
                and (fresh := policy.source._fresh)[0] is plan[0]
                and (fresh[1] is None or fresh[1] > policy.source.clock())
                and policy.allowed_urls.get(url)
            ):
                store[policy.header_key] = (policy.header, plan[1])
                # register_hook without its isinstance(hook, Callable) check
                r.hooks["response"].append(self._on_response)
                return r
        if _recovery.attach(policy, r)[0] is None:
            return r  # another origin, or the caller's own credential: left as it is
        r.hooks["response"].append(self._on_response)
        return r

    # The per-request state is the request itself: the token sent is the one
    # whose header value it carries (BearerPolicy.sent_with), and after the one
    # retry this hook is swapped for _after_retry in the request's hook list,
    # which requests shares with every redirect hop copied from it. It takes
    # Session.send's keywords by name (HTTPAdapter.send's), so that no dict of
    # them is built on every response; anything else goes in extra.
    def _on_response(
        self,
        response: Response,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        policy = self._policy
        if response.status_code not in policy.watched:
            return response
        request = response.request
        if request is None:
            return response
        sent = policy.sent_with(request.headers.get(policy.header))
        if sent is None:
            return response  # not our token (the caller's, or none)
        if not policy.is_allowed(request.url or "") or not _recovery.is_stale(
            policy, response, sent
        ):
            if response.is_redirect:
                _recovery.forget_on_redirect(policy, response, sent)
            return response
        hooks = request.hooks.get("response", [])
        if self._on_response in hooks:  # the caller may have replaced the list
            hooks[hooks.index(self._on_response)] = self._after_retry
        connection = response.connection

        def send_again(prepared: PreparedRequest) -> Response:
            resent: Response = connection.send(
                prepared, stream=stream, timeout=timeout, verify=verify, cert=cert,
                proxies=proxies, **extra,
            )  # fmt: skip
            return resent

        return _recovery.recover(
            policy, response, sent, replayable=is_replayable(request), send=send_again
        )

    def _after_retry(self, response: Response, **kwargs: Any) -> Response:
        """The hook once the retry is spent: redirects are still watched for foreign origins."""
        request = response.request
        if response.is_redirect and request is not None:
            sent = self._policy.sent_with(request.headers.get(self._policy.header))
            if sent is not None:
                _recovery.forget_on_redirect(self._policy, response, sent)
        return response
