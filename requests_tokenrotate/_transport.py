"""The transport's decision procedure, shared by the adapter and the auth.

docs/how-it-works.rst, "The transport": attach the token only to allowed origins, refresh
before sending a body that cannot be replayed when the token is about to
expire, and after a stale-token answer (RFC 6750 §3.1) refresh once and resend
a replayable body once. :class:`TokenRotateAdapter` and
:class:`TokenRotateAuth` are thin shells over one :class:`Transport`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypedDict
from urllib.parse import urljoin

from requests.cookies import extract_cookies_to_jar
from requests.exceptions import RequestException
from requests.models import REDIRECT_STATI, PreparedRequest

from ._body import rewind
from ._challenges import bearer_error, is_token
from ._origins import Origin, origin_of, parse_origins, show_origin
from ._source import RefreshPolicy
from ._token import HEADER_SAFE, fingerprint
from .exceptions import InvalidConfiguration, LockTimeout, RefreshError, TokenRotateError

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    from requests import Response
    from typing_extensions import Unpack

    from ._source import TokenSource
    from ._token import Token

__all__ = [
    "Origin",
    "Transport",
    "TransportOptions",
    "origin_of",
    "parse_origins",
    "release",
    "show_origin",
]

logger = logging.getLogger(__name__)

#: Statuses that may mean "stale token" (RFC 6750 §3.1); a 403 needs more evidence.
DEFAULT_REFRESH_ON: Final = (401, 403)
#: After a 403 without a Bearer error spent a refresh, further ones are taken
#: as genuine permission errors for this many seconds (how-it-works, transport step 5).
DEFAULT_COOLDOWN: Final = 60.0
DEFAULT_HEADER: Final = "Authorization"
DEFAULT_SCHEME: Final = "Bearer"

#: A discarded 401/403 body is read up to this many bytes so that its connection
#: can be reused; a longer (or endless) one closes the connection instead.
DEFAULT_DRAIN_LIMIT: Final = 64 * 1024

Send = Callable[[PreparedRequest], "Response"]

_REDIRECTS: Final = frozenset(REDIRECT_STATI)
_MAX_VERDICTS: Final = 512
_MAX_ISSUED: Final = 16
_DRAIN_CHUNK: Final = 16 * 1024


class TransportOptions(TypedDict, total=False):
    """The transport's knobs, spelled once for the adapter, the auth and :func:`mount`.

    Each is documented on :class:`TokenRotateAdapter`; a missing one takes its
    ``DEFAULT_*``. ``origins`` has no default: a token goes only where it was
    configured to go.
    """

    origins: str | Iterable[str]
    refresh_on: int | Iterable[int]
    refresh_margin: RefreshPolicy | float | None
    header: str
    scheme: str | None
    cooldown: float


_OPTION_NAMES: Final = frozenset(TransportOptions.__optional_keys__)


def _status_codes(refresh_on: int | Iterable[int]) -> frozenset[int]:
    try:
        codes = (refresh_on,) if isinstance(refresh_on, int) else tuple(refresh_on)
    except TypeError:
        codes = (refresh_on,)  # type: ignore[assignment]  # reported just below
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise InvalidConfiguration(f"refresh_on must hold HTTP status codes, not {code!r}")
    return frozenset(codes)


def release(response: Response, limit: int = DEFAULT_DRAIN_LIMIT) -> None:
    """Discard a response we will not return, keeping its connection only if that is cheap.

    A body of at most ``limit`` bytes is read (and kept in ``.content``) so
    that the connection goes back to the pool; a longer or endless one is not
    read further, and the connection is closed instead.
    """
    try:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            return  # close() below drops the connection without reading it
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_DRAIN_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                logger.debug("discarded a body over %d bytes: closing its connection", limit)
                return
        # All read: iter_content marked it consumed, so close() releases the connection.
        response._content = b"".join(chunks)
    except (RequestException, RuntimeError):  # a broken (or already read) body
        pass
    finally:
        response.close()


class Transport:
    """One decision procedure (how-it-works, transport steps 1-5) for one :class:`TokenSource`.

    Thread-safe: its only mutable state is a few caches replaced atomically.
    Options are :class:`TransportOptions`, documented on :class:`TokenRotateAdapter`.

    :raises InvalidConfiguration: A bad or missing option (``origins``).
    :raises TypeError: An unknown option, as for any misspelt keyword.
    """

    def __init__(self, source: TokenSource, **options: Unpack[TransportOptions]) -> None:
        unknown = options.keys() - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unexpected keyword argument {min(unknown)!r}")
        for name in ("token", "refresh", "is_usable", "clock"):
            if not callable(getattr(source, name, None)):
                raise InvalidConfiguration("source must be a TokenSource")
        origins = options.get("origins")
        if origins is None:
            raise InvalidConfiguration(
                "origins= is required: the origins that may receive the token, e.g. "
                "origins='https://api.example.com' (a path is ignored); or mount with "
                "rt.mount(session, prefix, source), which takes them from the prefix"
            )
        header = options.get("header", DEFAULT_HEADER)
        scheme = options.get("scheme", DEFAULT_SCHEME)
        cooldown = options.get("cooldown", DEFAULT_COOLDOWN)
        if not isinstance(header, str) or not is_token(header):
            raise InvalidConfiguration(f"header must be an HTTP header name, not {header!r}")
        if scheme is not None and scheme != "" and not is_token(scheme):
            raise InvalidConfiguration(f"scheme must be an auth-scheme token or '', not {scheme!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
            raise InvalidConfiguration("cooldown must be seconds >= 0")
        self.source = source
        self.origins = parse_origins(origins)
        self.refresh_on = _status_codes(options.get("refresh_on", DEFAULT_REFRESH_ON))
        self.policy = RefreshPolicy.coerce(options.get("refresh_margin"))
        self.header = header
        self.scheme = scheme or ""
        self.cooldown = float(cooldown)
        #: Statuses that need a look after the send; every other one is returned at once.
        self.watched = self.refresh_on | _REDIRECTS
        self._init_caches()

    def options(self) -> TransportOptions:
        """The options, normalised: ``Transport(source, **t.options())`` rebuilds ``t``."""
        return TransportOptions(
            origins=sorted(map(show_origin, self.origins)),
            refresh_on=sorted(self.refresh_on),
            refresh_margin=self.policy,
            header=self.header,
            scheme=self.scheme,
            cooldown=self.cooldown,
        )

    def _init_caches(self) -> None:
        self._prefix = f"{self.scheme} " if self.scheme else ""
        self._header_key = self.header.lower()
        self._cached: tuple[Token, str] | None = None  # the last token and its header value
        self._issued: dict[str, None] = {}  # recent header values of ours, oldest first
        self._verdicts: dict[str, bool] = {}  # "scheme://netloc" -> allowed
        self._forbidden_at = float("-inf")  # when a bare 403 last spent a refresh
        # The token a reactive refresh just obtained that the server rejected
        # at once, and when: another refresh on it waits for the cooldown.
        self._rejected: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "options": self.options()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], **state["options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        origins = sorted(map(show_origin, self.origins))
        return f"Transport(key={self.source.key!r}, origins={origins})"

    # -- origins -----------------------------------------------------------------
    def is_allowed(self, url: str) -> bool:
        """True if ``url``'s parsed origin is configured (never by string prefix)."""
        # The verdict depends on scheme and netloc only, and "scheme://netloc" ends
        # where the first "/" after "//" starts; cache it by that text.
        end = url.find("/", url.find("//") + 2)
        key = url if end < 0 else url[:end]
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = origin_of(key) in self.origins
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts = {}
            self._verdicts[key] = verdict
        return verdict

    def has_callers_header(self, headers: Mapping[str, str | bytes]) -> bool:
        """True if ``headers`` hold our token header with a value the caller set.

        A caller's own credential (``headers=``, another ``auth=``, netrc) is
        sent as it is and never refreshed; only a value this transport attached
        (which a redirect hop or a retry copies) is ours to replace.
        """
        store = getattr(headers, "_store", None)  # requests' CaseInsensitiveDict: no raise
        if store is not None:
            item = store.get(self._header_key)
            value = None if item is None else item[1]
        else:
            value = headers.get(self.header)
        return value is not None and value not in self._issued

    # -- the header --------------------------------------------------------------
    def header_value(self, token: Token) -> str:
        """``"<scheme> <access token>"`` (or the bare token), checked once per token.

        :raises InvalidConfiguration: The token holds characters that cannot go
            in a header (CR, LF, NUL, other controls, spaces, non-Latin-1).
        """
        cached = self._cached
        if cached is not None and cached[0] is token:
            return cached[1]
        access = token.access_token
        if HEADER_SAFE.fullmatch(access) is None:
            # requests' InvalidHeader would quote the value, that is, the token.
            raise InvalidConfiguration(
                f"the access token for {self.source.key!r} (fingerprint "
                f"{fingerprint(access)}) has characters that cannot be sent in an HTTP "
                "header; check the token endpoint or grant",
                key=self.source.key,
                hint=getattr(self.source, "hint", None),
            )
        value = self._prefix + access
        issued = self._issued
        if len(issued) >= _MAX_ISSUED:
            # Keep the newest half: a redirect hop may still carry a recent one.
            issued = dict.fromkeys(list(issued)[_MAX_ISSUED // 2 :])
        issued[value] = None
        self._issued = issued
        self._cached = (token, value)
        return value

    def carries(self, request: PreparedRequest, token: Token) -> bool:
        """True if ``request`` holds our header for ``token``."""
        return request.headers.get(self.header) == self.header_value(token)

    def strip(self, request: PreparedRequest, token: Token | None = None) -> None:
        """Remove our header if it holds ``token`` or the last token attached."""
        value = request.headers.get(self.header)
        if value is None:
            return
        if value in self._issued or (token is not None and value == self.header_value(token)):
            del request.headers[self.header]
            logger.debug("%s: removed the token from a request to another origin", self.source.key)

    # -- steps 1-3: before the send ----------------------------------------------
    def attach(self, request: PreparedRequest, replayable: bool) -> Token:
        """Put a usable token on ``request`` (already checked for its origin).

        :raises TokenRotateError: From the source (``NotLoggedIn``,
            ``TokenInvalidated``, ...), as they are.
        """
        try:
            token = self.fresh_token(replayable)
            cached = self._cached
            value = (
                cached[1] if cached is not None and cached[0] is token else self.header_value(token)
            )
        except TokenRotateError as exc:
            if exc.request is None:
                exc.request = request
            raise
        request.headers[self.header] = value
        return token

    def fresh_token(self, replayable: bool) -> Token:
        """A token to send with a body that is (or is not) ``replayable``; may block.

        :raises TokenRotateError: From the source, as they are.
        """
        token = self.source.token()
        if self.needs_early_refresh(token, replayable):
            token = self._refresh_early(token)
        return token

    def needs_early_refresh(self, token: Token, replayable: bool) -> bool:
        """True if a body that cannot be replayed must wait for a fresher ``token``."""
        return not replayable and token.expires_within(
            self.policy.margin_for(token), now=self.source.clock()
        )

    def _refresh_early(self, token: Token) -> Token:
        # how-it-works, transport step 3: a consumed stream cannot be resent after a 401.
        logger.debug(
            "%s: refreshing before sending a body that cannot be replayed", self.source.key
        )
        try:
            return self.source.refresh(token)
        except (RefreshError, LockTimeout) as exc:
            if not self.source.is_usable(token):
                raise
            # The token still works for a while; the request need not fail.
            logger.warning(
                "%s: early refresh failed (%s); sending the current token",
                self.source.key,
                type(exc).__name__,
            )
            return token

    # -- steps 4-5: after the send -----------------------------------------------
    def is_stale(self, response: Response, sent: Token) -> bool:
        """True if ``response`` says ``sent`` is stale (RFC 6750 §3.1, how-it-works step 5)."""
        return self.is_stale_answer(
            response.status_code, response.headers.get("WWW-Authenticate"), sent
        )

    def is_stale_answer(self, status: int, challenge: str | None, sent: Token) -> bool:
        """:meth:`is_stale` on plain values: the status and its ``WWW-Authenticate``."""
        if status not in self.refresh_on:
            return False
        error = bearer_error(challenge)
        if (status == 401 and error != "insufficient_scope") or error == "invalid_token":
            return not self._is_rejected_fresh(sent)
        if error is not None:  # insufficient_scope, invalid_request: a new token won't help
            logger.debug(
                "%s: %s with Bearer error %r; not refreshing", self.source.key, status, error
            )
            return False
        # A bare 403: stale token or a genuine permission error? Spend at most one
        # refresh per cooldown, and none on a token younger than the cooldown.
        now = self.source.clock()
        if now - sent.obtained_at < self.cooldown or now - self._forbidden_at < self.cooldown:
            logger.debug("%s: %s within the cooldown; not refreshing", self.source.key, status)
            return False
        self._forbidden_at = now
        return True

    def _is_rejected_fresh(self, sent: Token) -> bool:
        # A resource that rejects every token (wrong audience, revoked client)
        # must not cost one refresh per request: once a token a refresh just
        # obtained was rejected at once, that token is not refreshed again
        # until the cooldown has passed.
        rejected = self._rejected
        if rejected is None or rejected[0] != sent.access_token:
            return False
        now = self.source.clock()
        if now - rejected[1] < self.cooldown:
            logger.debug(
                "%s: the server rejects even a just-refreshed token; not refreshing again "
                "within the cooldown",
                self.source.key,
            )
            return True
        self._rejected = (sent.access_token, now)  # one more refresh now, then wait again
        return False

    def record_retry(self, status: int, challenge: str | None, new: Token) -> None:
        """Note the answer (status, ``WWW-Authenticate``) to the one resend made with
        ``new``, a just-refreshed token.

        If it says ``new`` is stale too, the server rejects even fresh tokens:
        ``new`` is not refreshed again within the cooldown (see :meth:`is_stale`).
        """
        if status not in self.refresh_on:
            return
        logger.debug("%s: %s again after the refresh; returning it", self.source.key, status)
        if status == 401 or bearer_error(challenge) == "invalid_token":
            self._rejected = (new.access_token, self.source.clock())

    def forget_on_redirect(
        self, response: Response, sent: Token, allows: Callable[[str], bool]
    ) -> None:
        """Drop our header from a request redirected to a foreign origin.

        requests copies the redirected request, headers included, for the next
        hop and strips only ``Authorization`` across hosts; a custom header or a
        scheme/port change would otherwise carry the token along.
        """
        location = response.headers.get("location")
        request = response.request
        if location and request is not None:
            target = urljoin(response.url or request.url or "", location)
            if not allows(target):
                self.strip(request, sent)

    def recover(
        self,
        response: Response,
        sent: Token,
        *,
        replayable: bool,
        send: Send,
        allows: Callable[[str], bool],
    ) -> Response:
        """Refresh after a stale-token ``response``; resend once if the body allows.

        ``response`` came from an allowed origin, answered a request that
        carried ``sent``, and :meth:`is_stale` said so.

        :raises TokenRotateError: The refresh failed (the response is closed
            and attached to the error).
        """
        key = self.source.key
        request = response.request
        if not replayable:
            logger.warning(
                "%s: %s answered %s and the body cannot be replayed; refreshed the token "
                "and returned the response",
                key,
                request.method,
                response.status_code,
            )
            self._refresh_after(response, sent)
            return response
        release(response)
        new = self._refresh_after(response, sent)
        if not rewind(request):
            logger.warning(
                "%s: could not rewind the body; returning the %s", key, response.status_code
            )
            return response
        value = self.header_value(new)
        # The 401 keeps a record of what was sent; the request itself is updated in
        # place, because requests builds the next redirect hop from it.
        response.request = request.copy()
        jar: CookieJar | None = getattr(request, "_cookies", None)
        if jar is not None:
            extract_cookies_to_jar(jar, request, response.raw)
            request.prepare_cookies(jar)
        request.headers[self.header] = value
        logger.debug(
            "%s: %s with token %s; retrying once with %s",
            key,
            response.status_code,
            fingerprint(sent.access_token),
            fingerprint(new.access_token),
        )
        retry = send(request)
        retry.history.append(response)
        if retry.is_redirect:
            self.forget_on_redirect(retry, new, allows)
        self.record_retry(retry.status_code, retry.headers.get("WWW-Authenticate"), new)
        return retry

    def _refresh_after(self, response: Response, sent: Token) -> Token:
        try:
            return self.source.refresh(sent)
        except TokenRotateError as exc:
            response.close()
            if exc.response is None:
                exc.response = response
                exc.request = response.request
            raise
