"""The bearer policy: every decision the four shells share, on plain values. No I/O.

Attach the token only to allowed origins (parsed scheme, host and port, never
a string prefix); the header value, checked once per token; a caller's own
header wins and is never refreshed; before sending a body that cannot be
replayed, refresh when the token is within the margin (:mod:`._freshness`);
after a stale-token answer (RFC 6750 §3.1: a 401, a 403 with
``invalid_token``, a bare 403 at most once per cooldown) refresh once; a
resource that rejects even a just-refreshed token costs one refresh per
cooldown, not one per request.

The shells do the I/O and ask this module: the requests adapter and auth
(with :mod:`._recovery`, the requests mechanics: rewind, cookies, history),
and the httpx twin (sync and async). This module imports no HTTP client; the
only blocking calls it makes are to the :class:`TokenSource` (the gate). The
rules are described in docs/how-it-works.rst, "The transport".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypedDict

from ._challenges import bearer_error, is_token
from ._freshness import RefreshPolicy
from ._token import HEADER_SAFE, fingerprint
from ._urls import Origin, origin_of, parse_origins, show_origin
from .exceptions import InvalidConfiguration, LockTimeout, RefreshError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._source import TokenSource
    from ._token import Token

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_HEADER",
    "DEFAULT_REFRESH_ON",
    "DEFAULT_SCHEME",
    "BearerPolicy",
    "Origin",
    "TransportOptions",
]

logger = logging.getLogger(__name__)

#: Statuses that may mean "stale token" (RFC 6750 §3.1); a 403 needs more evidence.
DEFAULT_REFRESH_ON: Final = (401, 403)
#: After a 403 without a Bearer error spent a refresh, further ones are taken
#: as genuine permission errors for this many seconds.
DEFAULT_COOLDOWN: Final = 60.0
DEFAULT_HEADER: Final = "Authorization"
DEFAULT_SCHEME: Final = "Bearer"

#: Redirect statuses (requests' REDIRECT_STATI): the shells look at them after a send.
REDIRECTS: Final = frozenset((301, 302, 303, 307, 308))
_MAX_VERDICTS: Final = 512
_MAX_ISSUED: Final = 16

class TransportOptions(TypedDict, total=False):
    """The transport's knobs, spelled once for the adapter, the auth and :func:`mount`.

    Each is documented on :class:`~requests_tokenrotate.TokenRotateAdapter`; a missing one takes its
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


def warn_unreplayable(key: str, method: str | None, status: int) -> None:
    """Say that a stale answer to an unreplayable body was returned, not resent (every shell)."""
    logger.warning(
        "%s: %s answered %s and the body cannot be replayed; refreshed the token "
        "and returned the response",
        key,
        method,
        status,
    )


def _status_codes(refresh_on: int | Iterable[int]) -> frozenset[int]:
    try:
        codes = (refresh_on,) if isinstance(refresh_on, int) else tuple(refresh_on)
    except TypeError:
        codes = (refresh_on,)  # type: ignore[assignment]  # reported just below
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise InvalidConfiguration(f"refresh_on must hold HTTP status codes, not {code!r}")
    return frozenset(codes)


class BearerPolicy:
    """The bearer policy of one :class:`TokenSource`: what the shells ask before and after a send.

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
        #: The shells' warm path reads a TokenSource's ``_fresh`` (its token in
        #: memory and until when it may be sent without asking); any other source
        #: always takes the full path (:meth:`outgoing`).
        self._warmable = isinstance(getattr(source, "_fresh", None), tuple)
        self.origins = parse_origins(origins)
        self.refresh_on = _status_codes(options.get("refresh_on", DEFAULT_REFRESH_ON))
        self.policy = RefreshPolicy.coerce(options.get("refresh_margin"))
        self.header = header
        self.scheme = scheme or ""
        self.cooldown = float(cooldown)
        #: Statuses that need a look after the send; every other one is returned at once.
        self.watched = self.refresh_on | REDIRECTS
        self._init_caches()

    def options(self) -> TransportOptions:
        """The options, normalised: ``BearerPolicy(source, **t.options())`` rebuilds ``t``."""
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
        #: ``header`` in lower case: the key of requests' CaseInsensitiveDict.
        self.header_key = self.header.lower()
        #: The shells' warm path reads these two without a call (each call costs
        #: more than the check, see docs/design-notes.rst): the last token whose
        #: header value was computed, with that value (None for a source without
        #: a warm path); and the verdicts of :meth:`is_allowed` by whole URL. Both
        #: are replaced, never mutated in place except for adding a verdict.
        self.warm: tuple[Token, str] | None = None
        self._cached: tuple[Token, str] | None = None  # the same, for any source
        self._issued: dict[str | bytes, Token] = {}  # our recent header values, oldest first
        self._verdicts: dict[str, bool] = {}  # "scheme://netloc" -> allowed
        self.allowed_urls: dict[str, bool] = {}
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
        return f"BearerPolicy(key={self.source.key!r}, origins={origins})"

    # -- origins -----------------------------------------------------------------
    def is_allowed(self, url: str) -> bool:
        """True if ``url``'s parsed origin is configured (never by string prefix)."""
        verdict = self.allowed_urls.get(url)  # the hot path: a URL seen before
        if verdict is not None:
            return verdict
        # The verdict depends on scheme and netloc only, and "scheme://netloc" ends
        # where the first "/" after "//" starts; cache it by that text too, so
        # that new paths on a known origin are not parsed again.
        end = url.find("/", url.find("//") + 2)
        key = url if end < 0 else url[:end]
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = origin_of(key) in self.origins
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts = {}
            self._verdicts[key] = verdict
        if len(self.allowed_urls) >= _MAX_VERDICTS:
            self.allowed_urls = {}
        self.allowed_urls[url] = verdict
        return verdict

    def has_callers_header(self, headers: Mapping[str, str | bytes]) -> bool:
        """True if ``headers`` hold our token header with a value the caller set.

        A caller's own credential (``headers=``, another ``auth=``) is
        sent as it is and never refreshed; only a value this policy attached
        (which a redirect hop or a retry copies) is ours to replace.
        """
        store = getattr(headers, "_store", None)  # requests' CaseInsensitiveDict: no raise
        if store is not None:
            item = store.get(self.header_key)
            value = None if item is None else item[1]
        elif self.header not in headers:  # httpx.Headers: the usual miss, looked up once
            return False
        else:
            value = headers.get(self.header)
        return value is not None and value not in self._issued

    def is_issued(self, value: str | bytes) -> bool:
        """True if ``value`` is a header value this policy attached recently."""
        return value in self._issued

    def sent_with(self, value: str | bytes | None) -> Token | None:
        """The token whose header value ``value`` is, if this policy attached it recently."""
        return None if value is None else self._issued.get(value)

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
            issued = dict(list(issued.items())[_MAX_ISSUED // 2 :])
        issued[value] = token
        self._issued = issued
        self._cached = (token, value)
        if self._warmable:
            self.warm = self._cached
        return value

    # -- steps 1-3: before the send ----------------------------------------------
    def fresh_token(self, replayable: bool) -> Token:
        """A token to send with a body that is (or is not) ``replayable``; may block.

        :raises TokenRotateError: From the source, as they are.
        """
        token = self.source.token()
        if not replayable and self.needs_early_refresh(token, replayable):
            token = self._refresh_early(token)
        return token

    def header_for(self, replayable: bool) -> tuple[Token, str]:
        """:meth:`fresh_token` and its :meth:`header_value`; may block.

        :raises TokenRotateError: From the source, as they are.
        :raises InvalidConfiguration: The token cannot go in a header.
        """
        token = self.fresh_token(replayable)
        cached = self._cached
        if cached is not None and cached[0] is token:
            return cached
        return token, self.header_value(token)

    def outgoing(
        self, url: str, current: str | bytes | None, replayable: bool
    ) -> tuple[Token, str] | None:
        """What to send to ``url``, whose token header now holds ``current``; may block.

        The shells' full path (the warm path is inline in each shell): None if
        the origin is not allowed (the shell then strips ``current`` if
        :meth:`is_issued`), or if ``current`` is the caller's own value (sent as
        it is); else the token and its header value, as :meth:`header_for`.

        :raises TokenRotateError: From the source, as they are.
        :raises InvalidConfiguration: The token cannot go in a header.
        """
        if not self.is_allowed(url):
            return None
        if current is not None and current not in self._issued:
            return None  # the caller's own credential
        return self.header_for(replayable)

    def needs_early_refresh(self, token: Token, replayable: bool) -> bool:
        """True if a body that cannot be replayed must wait for a fresher ``token``."""
        return not replayable and self.policy.needs_refresh(
            token, self.source.clock(), replayable=False
        )

    def _refresh_early(self, token: Token) -> Token:
        # A consumed stream cannot be resent after a 401: refresh before sending it.
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
    def is_stale_answer(self, status: int, challenge: str | None, sent: Token) -> bool:
        """True if an answer (its status and ``WWW-Authenticate``) says ``sent`` is stale.

        RFC 6750 §3.1: a 401 (unless ``insufficient_scope``) or ``invalid_token``
        means stale; another Bearer error never does; a bare 403 does at most
        once per cooldown, and never for a token younger than the cooldown.
        """
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
        ``new`` is not refreshed again within the cooldown (see :meth:`is_stale_answer`).
        """
        if status not in self.refresh_on:
            return
        logger.debug("%s: %s again after the refresh; returning it", self.source.key, status)
        if status == 401 or bearer_error(challenge) == "invalid_token":
            self._rejected = (new.access_token, self.source.clock())

