"""The httpx twin: :class:`TokenRotateAuth` for ``httpx.Client`` and ``httpx.AsyncClient``.

The same :class:`~requests_tokenrotate.TokenSource` and the same decision
procedure (:class:`~requests_tokenrotate._policy.BearerPolicy`) as the requests
adapter, so a requests process and an httpx process on one key make one
refresh together. Needs the ``httpx`` extra: ``pip install
requests-tokenrotate[httpx]``; ``import requests_tokenrotate`` never imports httpx.

How httpx drives an auth: :meth:`httpx.Auth.sync_auth_flow` (or the async one)
yields a request and receives the *final* response; redirects are followed by
the client between the two, and ``response.request`` is the last hop. So a
stale answer counts only if that last hop went to an allowed origin and carried
our token. httpx copies every header to a redirect hop and strips only
``Authorization`` on an origin change (and keeps it on an http-to-https upgrade
of the same host), see ``BaseClient._redirect_headers``.

The event loop (async flow) never waits for a refresh, a lock or the store:
the hot path (a token in memory and fresh: the warm path of
docs/design-notes.rst, or :meth:`TokenSource.peek`) is a few reads and a
compare; anything else runs the blocking :class:`TokenSource` in a
worker thread (``anyio.to_thread``), so its locks are taken and released in
that one thread. The tasks of one event loop that need the same refresh share
one worker call (one "flight"); a cancelled waiter just stops waiting.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import httpx

from ._httpx_errors import raise_for_httpx
from ._policy import (
    DEFAULT_COOLDOWN,
    DEFAULT_HEADER,
    DEFAULT_REFRESH_ON,
    DEFAULT_SCHEME,
    BearerPolicy,
    warn_unreplayable,
)
from ._token import fingerprint
from .exceptions import InvalidConfiguration, TokenRotateError

if TYPE_CHECKING:
    from ._freshness import RefreshPolicy
    from ._source import TokenSource
    from ._token import Token

__all__ = ["TokenRotateAuth"]

logger = logging.getLogger(__name__)

_FlightKey = tuple[str, int]
_MAX_VERDICTS: Final = 512


def _has_layout() -> tuple[bool, bool]:
    """Whether this httpx keeps a parsed URL as (scheme, userinfo, host, port, ...) in
    ``URL._uri_reference``, and headers as (raw key, lower-case key, value) in
    ``Headers._list``, as 0.27 and 0.28 do; the warm path reads them only then."""
    reference = getattr(httpx.URL("https://h:1/"), "_uri_reference", None)
    fields = getattr(reference, "_fields", ())
    items = getattr(httpx.Headers({"A": "b"}), "_list", None)
    return tuple(fields[:4]) == ("scheme", "userinfo", "host", "port"), items == [
        (b"A", b"a", b"b")
    ]


_URL_LAYOUT, _HEADERS_LAYOUT = _has_layout()


class TokenRotateAuth(httpx.Auth):
    """An :class:`httpx.Auth` that sends ``source``'s token, for sync and async clients::

        auth = TokenRotateAuth(source, origins=["https://api.example.com"])
        httpx.Client(auth=auth)  # or httpx.AsyncClient(auth=auth)

    The rules are those of :class:`~requests_tokenrotate.TokenRotateAdapter`:
    the token goes only to ``origins`` (required: there is no prefix to take
    it from); a stale answer (401; 403 with ``invalid_token``; a bare 403 at
    most once per ``cooldown``) from an allowed origin to a request that
    carried our token refreshes once and resends once if the body is bytes
    (``content=b"..."``, ``data=``, ``json=``); a streamed body (a sync or async
    iterator, a file, multipart) is never resent: the token is refreshed before
    sending when it expires within the refresh margin, and after a 401 the
    token is refreshed and the 401 returned.

    Redirects: with ``follow_redirects=False`` (httpx's default) the token is
    removed from ``response.next_request`` when it points to another origin.
    When the client follows redirects, httpx builds each hop itself outside the
    auth flow: it drops ``Authorization`` on an origin change, except on an
    http-to-https upgrade of the same host, and keeps any other header. Give
    the client this auth's hooks too and every hop to an origin that is not
    allowed goes without our token, whatever the header::

        httpx.Client(auth=auth, event_hooks=auth.event_hooks, follow_redirects=True)
        httpx.AsyncClient(auth=auth, event_hooks=auth.async_event_hooks, ...)

    Errors: the source's errors are raised as subclasses of both their
    requests-tokenrotate class (``TokenInvalidated``, ``RefreshError``, ...)
    and :class:`httpx.RequestError`, so ``except httpx.HTTPError`` handlers keep
    working; ``exc.request`` is the :class:`httpx.Request` and ``exc.response``
    the stale :class:`httpx.Response` when there was one.

    :param source: The :class:`TokenSource` that owns the token.
    :param origins: URLs whose origins get the token, e.g. ``"https://api.example.com"``.
    :param refresh_on: See :class:`TokenRotateAdapter` (default 401, 403).
    :param refresh_margin: See :class:`TokenRotateAdapter`.
    :param header: See :class:`TokenRotateAdapter` (default ``Authorization``).
    :param scheme: See :class:`TokenRotateAdapter` (default ``"Bearer"``).
    :param cooldown: See :class:`TokenRotateAdapter` (default 60 s).
    :raises InvalidConfiguration: No ``origins``, or a bad origin, header,
        scheme, status code, margin or cooldown.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        origins: str | Iterable[str],
        refresh_on: int | Iterable[int] = DEFAULT_REFRESH_ON,
        refresh_margin: RefreshPolicy | float | None = None,
        header: str = DEFAULT_HEADER,
        scheme: str | None = DEFAULT_SCHEME,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        if origins is None or (not isinstance(origins, str) and not list(origins)):
            raise InvalidConfiguration(
                "origins is required: the URLs whose origins get the token, "
                "e.g. origins=['https://api.example.com']"
            )
        if not callable(getattr(source, "peek", None)):
            raise InvalidConfiguration("source must be a TokenSource")
        self._policy = BearerPolicy(
            source,
            origins=origins,
            refresh_on=refresh_on,
            refresh_margin=refresh_margin,
            header=header,
            scheme=scheme,
            cooldown=cooldown,
        )
        self._verdicts: dict[tuple[str, bytes | str, int | None], bool] = {}
        self._header_raw = header.encode("ascii")
        self._header_lower = self._header_raw.lower()
        self._encoded: tuple[str, tuple[bytes, bytes, bytes]] | None = None
        # Per event loop: the refreshes in flight, by what they replace.
        self._flights: anyio.lowlevel.RunVar[dict[_FlightKey, _Flight]] = anyio.lowlevel.RunVar(
            f"tokenrotate-flights-{id(self):x}"
        )

    @property
    def source(self) -> TokenSource:
        """The :class:`TokenSource` whose token this auth sends."""
        return self._policy.source

    def __repr__(self) -> str:
        return f"<requests_tokenrotate.httpx.TokenRotateAuth {self._policy!r}>"

    # -- the sync flow ---------------------------------------------------------------
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        policy = self._policy
        sent = self._attach_warm(request)
        replayable = True if sent is not None else self._replayable_if_ours(request)
        if replayable is None:
            yield request  # another origin, or the caller's own credential: as it is
            return
        if sent is None:
            try:
                sent, value = policy.header_for(replayable)
                request.headers[policy.header] = value
            except TokenRotateError as exc:
                raise_for_httpx(exc, request)
        response = yield request
        if response.status_code not in policy.watched or not self._is_stale(response, sent):
            return
        try:
            new = policy.source.refresh(sent)
        except TokenRotateError as exc:
            raise_for_httpx(exc, request, response)
        if self._resend(request, response, sent, new, replayable):
            retry = yield request
            self._after_retry(retry, new)

    # -- the async flow ----------------------------------------------------------------
    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        policy = self._policy
        sent = self._attach_warm(request)
        replayable = True if sent is not None else self._replayable_if_ours(request)
        if replayable is None:
            yield request  # another origin, or the caller's own credential: as it is
            return
        if sent is None:
            try:
                sent = policy.source.peek()  # no thread, no lock
                if sent is None or policy.needs_early_refresh(sent, replayable):
                    sent = await self._off_loop(
                        ("attach", int(replayable)), None, policy.fresh_token, replayable
                    )
                request.headers[policy.header] = policy.header_value(sent)
            except TokenRotateError as exc:
                raise_for_httpx(exc, request)
        response = yield request
        if response.status_code not in policy.watched or not self._is_stale(response, sent):
            return
        try:
            new = await self._off_loop(("refresh", id(sent)), sent, policy.source.refresh, sent)
        except TokenRotateError as exc:
            raise_for_httpx(exc, request, response)
        if self._resend(request, response, sent, new, replayable):
            retry = yield request
            self._after_retry(retry, new)

    def _replayable_if_ours(self, request: httpx.Request) -> bool | None:
        """None if ``request`` goes to another origin or carries the caller's own header;
        else whether its body can be sent again (bytes, not a stream)."""
        if not self._is_allowed(request.url) or self._policy.has_callers_header(request.headers):
            return None
        return isinstance(request.stream, httpx.ByteStream)

    def _attach_warm(self, request: httpx.Request) -> Token | None:
        """The warm path of both flows, without a thread or a lock: the token sent, if the
        origin is one seen before and allowed, the body is bytes, the request has no
        header of ours, and the source's token in memory is fresh; else None."""
        policy = self._policy
        plan = policy.warm
        if plan is None or request.stream.__class__ is not httpx.ByteStream:
            return None
        if not (_URL_LAYOUT and _HEADERS_LAYOUT):
            return None
        ref = request.url._uri_reference  # the parsed URL, without three property calls
        fresh = policy.source._fresh  # TokenSource.peek() without the call
        if (
            fresh[0] is not plan[0]
            or (fresh[1] is not None and fresh[1] <= policy.source.clock())
            or not self._verdicts.get((ref[0], ref[2], ref[3]))
        ):
            return None
        items = request.headers._list  # (raw key, lower-case key, value)
        lower = self._header_lower
        for item in items:
            if item[1] == lower:
                return None
        encoded = self._encoded
        if encoded is None or encoded[0] is not plan[1]:
            if not plan[1].isascii():
                return None  # httpx's own encoding rules then apply
            encoded = self._encoded = (plan[1], (self._header_raw, lower, plan[1].encode("ascii")))
        items.append(encoded[1])
        return plan[0]

    async def _off_loop(
        self, key: _FlightKey, subject: object, call: Callable[..., Token], *args: object
    ) -> Token:
        """``call(*args)`` in a worker thread, shared by this loop's tasks that ask for ``key``."""
        flights = self._flights.get(None)
        if flights is None:
            flights = {}
            self._flights.set(flights)
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = _Flight(subject)
            loop = anyio.lowlevel.current_token()

            def finish() -> None:
                if flights.get(key) is flight:
                    del flights[key]
                flight.done.set()

            def work() -> None:
                try:
                    flight.token = call(*args)
                except BaseException as exc:  # handed to every waiter
                    flight.error = exc
                # RuntimeError: the loop is gone, nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    anyio.from_thread.run_sync(finish, token=loop)

            # A cancelled leader stops waiting; the thread still finishes the flight
            # and releases the locks it took itself (python-sdk #3382).
            await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.token is not None  # noqa: S101  # set unless error is
        return flight.token

    # -- redirect hops the client follows by itself ----------------------------------
    @property
    def event_hooks(self) -> dict[str, list[Callable[[httpx.Request], None]]]:
        """``event_hooks=`` for an :class:`httpx.Client` that follows redirects.

        httpx runs request hooks on every hop; this one removes our token from a
        hop to an origin that is not allowed (a caller's own header stays).

        .. versionadded:: 0.2.0
        """
        return {"request": [self._strip_foreign_hop]}

    @property
    def async_event_hooks(self) -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
        """:attr:`event_hooks` for an :class:`httpx.AsyncClient`.

        .. versionadded:: 0.2.0
        """

        async def strip(request: httpx.Request) -> None:
            self._strip_foreign_hop(request)

        return {"request": [strip]}

    def _strip_foreign_hop(self, request: httpx.Request) -> None:
        policy = self._policy
        if (
            policy.header in request.headers
            and not self._is_allowed(request.url)
            and not policy.has_callers_header(request.headers)
        ):
            del request.headers[policy.header]
            logger.debug(
                "%s: removed the token from a redirect hop to another origin", policy.source.key
            )

    # -- decisions shared by both flows --------------------------------------------------
    def _is_allowed(self, url: httpx.URL) -> bool:
        """:meth:`BearerPolicy.is_allowed`, cached by the URL's parsed scheme, host and port."""
        if _URL_LAYOUT:
            ref = url._uri_reference
            key: tuple[str, str | bytes, int | None] = (ref[0], ref[2], ref[3])
        else:
            key = (url.scheme, url.raw_host, url.port)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._policy.is_allowed(str(url))
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts = {}
            self._verdicts[key] = verdict
        return verdict

    def _is_stale(self, response: httpx.Response, sent: Token) -> bool:
        """True if ``response`` (the last hop) came from an allowed origin with ``sent`` and
        says it is stale; else strips the token from a redirect that was not followed."""
        policy = self._policy
        if response.status_code not in policy.watched:
            return False
        hop = response.request
        value = policy.header_value(sent)
        if (
            self._is_allowed(hop.url)
            and hop.headers.get(policy.header) == value
            and policy.is_stale_answer(
                response.status_code, response.headers.get("WWW-Authenticate"), sent
            )
        ):
            return True
        self._forget_on_redirect(response, value)
        return False

    def _forget_on_redirect(self, response: httpx.Response, value: str) -> None:
        # httpx copies every header into next_request and strips only Authorization.
        following = response.next_request
        policy = self._policy
        if (
            following is not None
            and not self._is_allowed(following.url)
            and following.headers.get(policy.header) == value
        ):
            del following.headers[policy.header]
            logger.debug(
                "%s: removed the token from a redirect to another origin", policy.source.key
            )

    def _resend(
        self,
        request: httpx.Request,
        response: httpx.Response,
        sent: Token,
        new: Token,
        replayable: bool,
    ) -> bool:
        """Put ``new`` on ``request`` and say whether to send it again."""
        policy = self._policy
        key = policy.source.key
        if not replayable:
            warn_unreplayable(key, request.method, response.status_code)
            return False
        try:
            request.headers[policy.header] = policy.header_value(new)
        except TokenRotateError as exc:
            raise_for_httpx(exc, request, response)
        logger.debug(
            "%s: %s with token %s; retrying once with %s",
            key,
            response.status_code,
            fingerprint(sent.access_token),
            fingerprint(new.access_token),
        )
        return True

    def _after_retry(self, retry: httpx.Response, new: Token) -> None:
        policy = self._policy
        # A resource that rejects even the fresh token: not refreshed again within the cooldown.
        policy.record_retry(retry.status_code, retry.headers.get("WWW-Authenticate"), new)
        if retry.next_request is not None:
            self._forget_on_redirect(retry, policy.header_value(new))


class _Flight:
    """One worker-thread call that several tasks of one event loop wait for."""

    __slots__ = ("done", "error", "subject", "token")

    def __init__(self, subject: object) -> None:
        self.subject = subject  # keeps the stale token alive, so its id() stays unique
        self.done = anyio.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None
