"""TokenSource: the only code that decides to refresh.

The design is in docs/how-it-works.rst, "The refresh gate".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import requests

from ._gate import Gate
from ._grants import requires_token
from ._token import Record, Token, fingerprint
from .exceptions import (
    InvalidConfiguration,
    NotLoggedIn,
    RefreshError,
    TokenInvalidated,
    TokenRotateError,
    TokenStoreError,
)

if TYPE_CHECKING:
    from ._grants import Grant
    from ._stores import TokenStore

logger = logging.getLogger(__name__)

#: Seconds to wait for the refresh gate; longer than a slow token endpoint (35 s).
DEFAULT_LOCK_TIMEOUT: Final = 60.0
#: Seconds before expiry at which a stored token stops being reused.
DEFAULT_GRACE: Final = 5.0
#: ... but never more than this share of the token's lifetime: a 2 s token is
#: used for 1.95 s, so refreshes track the lifetimes elapsed (bench/soak.py);
#: a token that expires in flight meets the reactive retry.
DEFAULT_GRACE_FRACTION: Final = 0.025
#: The scaled refresh margin (docs/how-it-works.rst, the transport, step 3): 10 % of the lifetime,
#: clamped to 30 s - 300 s and never more than half the lifetime.
DEFAULT_MARGIN_FRACTION: Final = 0.1
DEFAULT_MIN_MARGIN: Final = 30.0
DEFAULT_MAX_MARGIN: Final = 300.0
#: How long a token that arrives already stale is used before asking again.
MIN_REUSE: Final = 10.0


class RefreshPolicy(Record):
    """When to refresh before sending a body that cannot be replayed.

    :param margin: Fixed seconds before expiry, or None for the scaled default
        (10 % of the lifetime, clamped to 30 s - 300 s). Either way never more
        than half the token's lifetime, so short-lived tokens are not
        refreshed on every request.
    """

    __slots__ = ("margin",)
    margin: float | None

    def __init__(self, margin: float | None = None) -> None:
        self._init(margin=margin)

    @classmethod
    def coerce(cls, value: RefreshPolicy | float | None) -> RefreshPolicy:
        """Accept a policy, a number of seconds, or None (the default)."""
        if isinstance(value, RefreshPolicy):
            return value
        if value is None:
            return cls()
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidConfiguration("refresh_margin must be None or seconds >= 0")
        return cls(margin=float(value))

    def margin_for(self, token: Token) -> float:
        """Seconds before ``token``'s expiry at which to refresh proactively."""
        lifetime = token.lifetime
        if lifetime is None or lifetime <= 0:
            return 0.0 if self.margin is None else self.margin
        if self.margin is None:
            scaled = lifetime * DEFAULT_MARGIN_FRACTION
            margin = min(max(scaled, DEFAULT_MIN_MARGIN), DEFAULT_MAX_MARGIN)
        else:
            margin = self.margin
        return min(margin, lifetime / 2)


class TokenSource:
    """Owns one key of a store: hands out usable tokens, refreshes them single-flight.

    :param grant: How to get a new token (:class:`RefreshTokenGrant`, ...),
        or any callable ``(stale: Token | None) -> Token``.
    :param store: Where tokens live (default: a :class:`FileTokenStore` in the
        platformdirs directory).
    :param key: The store key: a profile, account or ``profile/org/stack``.
    :param lock_timeout: Seconds to wait for the refresh gate (default 60).
    :param grace: A token is reused only while it has more than this many
        seconds left. Default None: 5 s, but at most 2.5 % of its lifetime (a
        2 s token is used for 1.95 s); a number is used as given, up to half
        the lifetime.
    :param max_age: Reuse a stored token only while it is younger than this
        (seconds); 0 never reuses one across processes. Default: no limit.
    :param hint: Appended to error messages, e.g. ``"run `mytool login`"``.
    :param clock: Epoch-seconds clock (tests inject one).
    """

    def __init__(
        self,
        grant: Grant | Callable[[Token | None], Token],
        store: TokenStore | None = None,
        key: str = "default",
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        grace: float | None = None,
        max_age: float | None = None,
        hint: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(grant):
            raise InvalidConfiguration("grant must be callable: (stale Token | None) -> Token")
        if not isinstance(key, str) or not key:
            raise InvalidConfiguration("key must be a non-empty string")
        if store is None:
            from ._stores import FileTokenStore

            store = FileTokenStore()
        self.grant = grant
        self.store = store
        self.key = key
        self.grace = grace
        self.max_age = max_age
        self.hint = hint
        self.clock = clock
        self._gate = Gate(store, key, lock_timeout)
        #: The token in memory and the instant it stops being usable (None:
        #: never), computed once per token so token() only compares.
        self._fresh: tuple[Token | None, float | None] = (None, None)
        self._warned_short = False

    def __repr__(self) -> str:
        return f"TokenSource(key={self.key!r}, store={self.store!r})"

    # -- freshness ---------------------------------------------------------
    @property
    def _token(self) -> Token | None:
        return self._fresh[0]

    @_token.setter
    def _token(self, token: Token | None) -> None:
        expires_at = None if token is None else token.expires_at
        deadline = None if token is None or expires_at is None else expires_at - self._skew(token)
        self._fresh = (token, deadline)

    def _skew(self, token: Token) -> float:
        lifetime = token.lifetime
        if self.grace is not None:
            return self.grace if lifetime is None else max(min(self.grace, lifetime / 2), 0.0)
        if lifetime is None:
            return DEFAULT_GRACE
        return max(min(DEFAULT_GRACE, lifetime * DEFAULT_GRACE_FRACTION), 0.0)

    def is_usable(self, token: Token | None, *, from_store: bool = False) -> bool:
        """True if ``token`` may be sent now: not invalidated and not about to expire."""
        if token is None or token.invalidated_at is not None:
            return False
        now = self.clock()
        if from_store and self.max_age is not None and now - token.obtained_at >= self.max_age:
            return False
        return token.expires_at is None or token.expires_at - self._skew(token) > now

    # -- public API ----------------------------------------------------------
    def token(self) -> Token:
        """Return a usable token, refreshing it first if it has expired.

        :raises NotLoggedIn: Nothing is stored for the key.
        :raises TokenInvalidated: The refresh credential is dead: log in again.
        :raises RefreshError: The token endpoint failed transiently.
        :raises LockTimeout: The refresh gate stayed busy past ``lock_timeout``.
        """
        token, deadline = self._fresh  # the hot path: one read and a compare
        if token is not None and (deadline is None or deadline > self.clock()):
            return token
        return self.refresh(token)

    def refresh(self, stale: Token | None = None) -> Token:
        """Replace ``stale`` with a fresh token, once for all threads and processes.

        If another thread or process already replaced ``stale``, its token is
        returned and no network call is made.

        :param stale: The token that turned out stale (the one actually sent);
            None to only ensure a usable token.
        :raises NotLoggedIn: Nothing is stored for the key.
        :raises TokenInvalidated: The refresh credential is dead: log in again.
        :raises RefreshError: The token endpoint failed transiently.
        :raises LockTimeout: The refresh gate stayed busy past ``lock_timeout``.
        """
        try:
            return self._refresh(stale)
        except TokenRotateError as exc:
            raise exc.for_key(self.key, self.hint) from exc.__cause__

    def _adoptable(self, candidate: Token | None, stale: Token | None, *, from_store: bool) -> bool:
        return self.is_usable(candidate, from_store=from_store) and not (
            stale is not None and candidate is not None and candidate.is_same(stale)
        )

    def _refresh(self, stale: Token | None) -> Token:
        with self._gate.threads() as deadline:
            # Check 1: a thread of ours refreshed while we waited.
            if self._adoptable(self._token, stale, from_store=False):
                assert self._token is not None  # noqa: S101  # narrowed by _adoptable
                return self._token
            stored = self._read_checked()
            if self._adoptable(stored, stale, from_store=True):
                return self._remember(stored, "adopted from the store")
            if stored is None and requires_token(self.grant):
                raise NotLoggedIn(f"no token stored for {self.key!r}; log in first", key=self.key)
            with self._gate.processes(deadline):
                # Check 2: a peer process refreshed while we waited for its lock.
                stored = self._read_checked()
                if self._adoptable(stored, stale, from_store=True):
                    return self._remember(stored, "adopted a peer's refresh")
                return self._call_grant(stored)

    def _read_checked(self) -> Token | None:
        stored = self.store.load(self.key)
        if stored is not None and stored.invalidated_at is not None:
            self._token = None
            raise TokenInvalidated(
                f"the refresh credential for {self.key!r} was rejected; log in again",
                key=self.key,
                invalidated_at=stored.invalidated_at,
            )
        return stored

    def _remember(self, token: Token | None, how: str) -> Token:
        assert token is not None  # noqa: S101  # callers checked usability
        logger.debug("%s: %s token %s", self.key, how, fingerprint(token.access_token))
        self._token = token
        return token

    def _call_grant(self, stored: Token | None) -> Token:
        logger.debug(
            "%s: refresh start (stale %s)",
            self.key,
            fingerprint(stored.access_token if stored else None),
        )
        started = time.monotonic()
        try:
            new = self.grant(stored)
        except TokenInvalidated as exc:
            # A parent source's dead credential (key set, not ours) is not ours to stamp.
            if exc.key is None or exc.key == self.key:
                self._stamp(stored, exc)
            raise
        except TokenRotateError:
            raise
        except (requests.RequestException, OSError, ValueError) as exc:
            # A callable grant's own failure: transient, and its text may hold secrets.
            raise RefreshError(
                f"the grant for {self.key!r} failed ({type(exc).__name__}); try again", key=self.key
            ) from None
        if not isinstance(new, Token):
            raise InvalidConfiguration(
                f"the grant for {self.key!r} returned no Token", key=self.key
            )
        new = new.with_refresh_token_of(stored).replace(
            invalidated_at=None,
            # A callable grant may leave obtained_at unset; lifetimes need it.
            obtained_at=new.obtained_at or self.clock(),
        )
        if not self.is_usable(new):
            new = self._accept_short_lived(new)
        try:
            self.store.save(self.key, new)  # before the lock is released
        except TokenStoreError as exc:
            # The old refresh token is spent: keep the new one in memory at least.
            logger.warning("%s: could not save the refreshed token: %s", self.key, exc)
        logger.debug(
            "%s: refresh done in %.1f ms, new token %s",
            self.key,
            (time.monotonic() - started) * 1e3,
            fingerprint(new.access_token),
        )
        self._token = new
        return new

    def _accept_short_lived(self, new: Token) -> Token:
        # A server TTL shorter than our skew, or a skewed clock: use the token
        # anyway instead of refreshing on every request.
        if not self._warned_short:
            self._warned_short = True
            logger.warning(
                "%s: the token endpoint issued a token that is already (nearly) expired by the "
                "local clock; using it for %g s. Check the clock and the server's token lifetime.",
                self.key,
                MIN_REUSE,
            )
        now = self.clock()
        return new.replace(obtained_at=now, expires_at=now + MIN_REUSE)

    def _stamp(self, rejected: Token | None, exc: TokenInvalidated) -> None:
        self._token = None
        if rejected is None:
            return
        current = self.store.load(self.key)
        # Stamp only if the store still holds the credential the server rejected:
        # a peer may have logged in again meanwhile.
        if current is not None and current.is_same(rejected):
            stamped = current.replace(invalidated_at=exc.invalidated_at or self.clock())
            self.store.save(self.key, stamped)
            logger.warning("%s: refresh credential rejected; stamped invalidated", self.key)
        exc.invalidated_at = exc.invalidated_at or self.clock()

    def login(self, token: Token | dict[str, object]) -> Token:
        """Seed the store with a token (or a token-endpoint JSON response).

        Clears an invalidated stamp or a corrupt file for the key.

        :raises ValueError: ``token`` is a dict without an ``access_token``.
        """
        if not isinstance(token, Token):
            token = Token.from_response(token, now=self.clock())
        token = token.replace(invalidated_at=None)
        with self._gate.threads() as deadline, self._gate.processes(deadline):
            self.store.save(self.key, token)
            self._token = token
        logger.debug("%s: logged in with token %s", self.key, fingerprint(token.access_token))
        return token

    def logout(self) -> None:
        """Forget the key's token, in memory and in the store."""
        with self._gate.threads() as deadline, self._gate.processes(deadline):
            self.store.delete(self.key)
            self._token = None
