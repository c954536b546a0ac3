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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

from requests.cookies import extract_cookies_to_jar
from requests.exceptions import RequestException
from requests.models import REDIRECT_STATI, PreparedRequest

from ._body import rewind
from ._challenges import bearer_error, is_token
from ._source import RefreshPolicy
from ._token import HEADER_SAFE, fingerprint
from .exceptions import InvalidConfiguration, LockTimeout, RefreshError, TokenRotateError

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    from requests import Response

    from ._source import TokenSource
    from ._token import Token

logger = logging.getLogger(__name__)

#: Statuses that may mean "stale token" (RFC 6750 §3.1); a 403 needs more evidence.
DEFAULT_REFRESH_ON: Final = (401, 403)
#: After a 403 without a Bearer error spent a refresh, further ones are taken
#: as genuine permission errors for this many seconds (how-it-works, transport step 5).
DEFAULT_COOLDOWN: Final = 60.0
DEFAULT_HEADER: Final = "Authorization"
DEFAULT_SCHEME: Final = "Bearer"

#: (scheme, host, port), with the default port filled in.
Origin = tuple[str, str, int]
Send = Callable[[PreparedRequest], "Response"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_REDIRECTS: Final = frozenset(REDIRECT_STATI)
_MAX_VERDICTS: Final = 512


# -- origins --------------------------------------------------------------------
def origin_of(url: str) -> Origin | None:
    """The (scheme, host, port) of an http(s) URL as requests connects to it, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    default = _DEFAULT_PORTS.get(scheme)
    if default is None or not host:
        return None
    return (scheme, host, default if port is None else port)


def show_origin(origin: Origin) -> str:
    """``https://host:port`` for messages and logs (never a path or query)."""
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def parse_origins(origins: str | Iterable[str]) -> frozenset[Origin]:
    """Normalise configured origins the way requests prepares URLs (IDNA, case, ports).

    :raises InvalidConfiguration: An entry is not an absolute http(s) URL.
    """
    if isinstance(origins, str):
        origins = (origins,)
    parsed = set()
    for url in origins:
        prepared = PreparedRequest()
        try:
            prepared.prepare_url(url, None)
        except (RequestException, ValueError, TypeError, UnicodeError):
            origin = None
        else:
            origin = origin_of(prepared.url or "")
        if origin is None:
            raise InvalidConfiguration(
                f"origins must be absolute http(s) URLs such as 'https://api.example.com', "
                f"not {url!r}"
            )
        parsed.add(origin)
    return frozenset(parsed)


def _status_codes(refresh_on: int | Iterable[int]) -> frozenset[int]:
    codes = (refresh_on,) if isinstance(refresh_on, int) else tuple(refresh_on)
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise InvalidConfiguration(f"refresh_on must hold HTTP status codes, not {code!r}")
    return frozenset(codes)


def release(response: Response) -> None:
    """Read and close a response we will not return, so its connection goes back to the pool."""
    try:
        response.content  # noqa: B018  # reading it is the point (also with stream=True)
    except RequestException:  # a broken body: closing discards the connection instead
        pass
    finally:
        response.close()


class Transport:
    """One decision procedure (how-it-works, transport steps 1-5) for one :class:`TokenSource`.

    Thread-safe: its only mutable state is a few caches replaced atomically.
    Arguments are documented on :class:`TokenRotateAdapter`.
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
        for name in ("token", "refresh", "is_usable", "clock"):
            if not callable(getattr(source, name, None)):
                raise InvalidConfiguration("source must be a TokenSource")
        if not is_token(header):
            raise InvalidConfiguration(f"header must be an HTTP header name, not {header!r}")
        if scheme is not None and scheme != "" and not is_token(scheme):
            raise InvalidConfiguration(f"scheme must be an auth-scheme token or '', not {scheme!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
            raise InvalidConfiguration("cooldown must be seconds >= 0")
        self.source = source
        self.origins = None if origins is None else parse_origins(origins)
        self.refresh_on = _status_codes(refresh_on)
        self.policy = RefreshPolicy.coerce(refresh_margin)
        self.header = header
        self.scheme = scheme or ""
        self.cooldown = float(cooldown)
        #: Statuses that need a look after the send; every other one is returned at once.
        self.watched = self.refresh_on | _REDIRECTS
        self._init_caches()

    def _init_caches(self) -> None:
        self._prefix = f"{self.scheme} " if self.scheme else ""
        self._cached: tuple[Token, str] | None = None  # the last token and its header value
        self._verdicts: dict[str, bool] = {}  # "scheme://netloc" -> allowed
        self._forbidden_at = float("-inf")  # when a bare 403 last spent a refresh
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        keep = ("source", "origins", "refresh_on", "policy", "header", "scheme", "cooldown")
        return {name: self.__dict__[name] for name in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.watched = self.refresh_on | _REDIRECTS
        self._init_caches()

    def __repr__(self) -> str:
        origins = (
            "first request" if self.origins is None else sorted(map(show_origin, self.origins))
        )
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
            origins = self.origins
            if origins is None:
                return False
            verdict = origin_of(key) in origins
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts = {}
            self._verdicts[key] = verdict
        return verdict

    def pin(self, url: str) -> bool:
        """With ``origins=None``, adopt ``url``'s origin; True if ``url`` is then allowed."""
        if self.origins is None and (origin := origin_of(url)) is not None:
            with self._lock:
                if self.origins is None:
                    self.origins = frozenset((origin,))
                    self._verdicts = {}
                    logger.debug("%s: token pinned to %s", self.source.key, show_origin(origin))
        return self.is_allowed(url)

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
        cached = self._cached
        if (cached is not None and value == cached[1]) or (
            token is not None and value == self.header_value(token)
        ):
            del request.headers[self.header]
            logger.debug("%s: removed the token from a request to another origin", self.source.key)

    # -- steps 1-3: before the send ----------------------------------------------
    def attach(self, request: PreparedRequest, replayable: bool) -> Token:
        """Put a usable token on ``request`` (already checked for its origin).

        :raises TokenRotateError: From the source (``NotLoggedIn``,
            ``TokenInvalidated``, ...), as they are.
        """
        source = self.source
        try:
            token = source.token()
            if not replayable and token.expires_within(
                self.policy.margin_for(token), now=source.clock()
            ):
                token = self._refresh_early(token)
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
        status = response.status_code
        if status not in self.refresh_on:
            return False
        error = bearer_error(response.headers.get("WWW-Authenticate"))
        if (status == 401 and error != "insufficient_scope") or error == "invalid_token":
            return True
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
        if retry.status_code in self.refresh_on:
            logger.debug("%s: %s again after the refresh; returning it", key, retry.status_code)
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
