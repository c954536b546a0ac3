"""TokenSource: the refresh gate, the only code that calls a grant.

Freshness is decided in :mod:`._freshness` (the reuse grace); this module
applies it under the gate (:mod:`._gate`: the thread lock, then the store's
lock, re-reading the store after each) and keeps the store contract
(:mod:`._protocol`): no token call that could outlive the lock, a
compare-and-set save before the lock is released, a dead credential stamped
so that every process stops spending it. The design is in
docs/how-it-works.rst, "The refresh gate".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import requests

from ._freshness import MIN_REUSE as MIN_REUSE
from ._freshness import RefreshPolicy as RefreshPolicy
from ._freshness import is_adoptable, is_usable, reuse_until, stretched
from ._gate import Gate
from ._protocol import requires_token
from ._token import Token, fingerprint
from .exceptions import (
    InvalidConfiguration,
    LockLost,
    LockTimeout,
    NotLoggedIn,
    RefreshError,
    TokenInvalidated,
    TokenRotateError,
    TokenStoreError,
)

if TYPE_CHECKING:
    from ._endpoint import OAuthClient
    from ._protocol import Grant, HeldLock, TokenStore

logger = logging.getLogger(__name__)

#: Seconds to wait for the refresh gate; longer than a slow token endpoint (35 s).
DEFAULT_LOCK_TIMEOUT: Final = 60.0
#: The lock must outlive a token call by this much when the grant names no
#: ``deadline`` (a plain callable); equal to OAuthClient's default deadline.
ASSUMED_CALL_DEADLINE: Final = 30.0
#: Saves tried under the lock before the store is declared behind, and the pause
#: that grows between them (a full disk may be freed, a network store may return).
SAVE_ATTEMPTS: Final = 3
SAVE_RETRY_PAUSE: Final = 0.05


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
        deadline = getattr(grant, "deadline", None)
        if isinstance(deadline, int | float) and not deadline < lock_timeout:
            # A call that may outlast the lock lets peers time out waiting for it.
            raise InvalidConfiguration(
                f"the grant's deadline ({deadline:g} s) must be below lock_timeout "
                f"({lock_timeout:g} s): lower OAuthClient(deadline=) or raise lock_timeout"
            )
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
        #: never), computed once per token so token() only compares. Replaced,
        #: never mutated: the shells' warm path reads it without a call.
        self._fresh: tuple[Token | None, float | None] = (None, None)
        self._warned_short = False
        #: After a failed save: (the stored token it replaced, the newest token).
        self._unsaved: tuple[Token | None, Token] | None = None

    def __repr__(self) -> str:
        return f"TokenSource(key={self.key!r}, store={self.store!r})"

    # -- freshness ---------------------------------------------------------
    @property
    def _token(self) -> Token | None:
        return self._fresh[0]

    @_token.setter
    def _token(self, token: Token | None) -> None:
        self._fresh = (token, None if token is None else reuse_until(token, self.grace))

    def is_usable(self, token: Token | None, *, from_store: bool = False) -> bool:
        """True if ``token`` may be sent now: not invalidated and not about to expire."""
        return is_usable(
            token, self.clock(), grace=self.grace, max_age=self.max_age, from_store=from_store
        )

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

    def peek(self) -> Token | None:
        """The token in memory if it is usable now, else None; never waits or reads the store.

        Event-loop code calls this first and runs :meth:`token` off the loop only on None.
        """
        token, deadline = self._fresh
        if token is not None and (deadline is None or deadline > self.clock()):
            return token
        return None

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
        return is_adoptable(
            candidate, stale, self.clock(), grace=self.grace, max_age=self.max_age,
            from_store=from_store,
        )  # fmt: skip

    def _refresh(self, stale: Token | None) -> Token:
        with self._gate.threads() as deadline:
            # Check 1: a thread of ours refreshed while we waited (and saved it).
            if self._unsaved is None and self._adoptable(self._token, stale, from_store=False):
                assert self._token is not None  # noqa: S101  # narrowed by _adoptable
                return self._token
            stored = self._checked(self.store.load(self.key))
            if self._adoptable(stored, stale, from_store=True):
                return self._remember(stored, "adopted from the store")
            if stored is None and self._unsaved is None and requires_token(self.grant):
                raise NotLoggedIn(f"no token stored for {self.key!r}; log in first", key=self.key)
            with self._gate.processes(deadline) as held:
                # Check 2: a peer process refreshed while we waited for its lock.
                stored = self._catch_up(held, self._checked(held.load()))
                if self._adoptable(stored, stale, from_store=True):
                    return self._remember(stored, "adopted a peer's refresh")
                if stored is None and requires_token(self.grant):
                    raise NotLoggedIn(
                        f"no token stored for {self.key!r}; log in first", key=self.key
                    )
                return self._call_grant(held, stored)

    def _checked(self, stored: Token | None) -> Token | None:
        if stored is not None and stored.invalidated_at is not None:
            self._token = None
            self._unsaved = None
            raise TokenInvalidated(
                f"the refresh credential for {self.key!r} was rejected; log in again",
                key=self.key,
                invalidated_at=stored.invalidated_at,
            )
        return stored

    def _catch_up(self, held: HeldLock, stored: Token | None) -> Token | None:
        """The newest token we know: ours if a save failed and the store still lags."""
        if self._unsaved is None:
            return stored
        base, newest = self._unsaved
        if stored is None or base is None or not stored.is_same(base):
            # A login, logout or peer moved the store on since: it is the newer.
            self._unsaved = None
            return stored
        if self._save(held, newest, attempts=1):
            logger.warning("%s: the store has caught up with the token held in memory", self.key)
        return newest

    def _remember(self, token: Token | None, how: str) -> Token:
        assert token is not None  # noqa: S101  # callers checked usability
        logger.debug("%s: %s token %s", self.key, how, fingerprint(token.access_token))
        self._token = token
        return token

    def _call_grant(self, held: HeldLock, stored: Token | None) -> Token:
        logger.debug(
            "%s: refresh start (stale %s)",
            self.key,
            fingerprint(stored.access_token if stored else None),
        )
        # The store contract, step 3: no call that could outlive the lock.
        needed = getattr(self.grant, "deadline", None) or ASSUMED_CALL_DEADLINE
        left = held.remaining()
        if left < needed:
            raise LockLost(
                f"the refresh lock for {self.key!r} has {max(left, 0.0):.1f} s left, less than "
                f"the token call may take ({needed:g} s); not calling the token endpoint. "
                "Try again.",
                key=self.key,
            )
        started = time.monotonic()
        try:
            new = self.grant(stored)
        except TokenInvalidated as exc:
            # A parent source's dead credential (key set, not ours) is not ours to stamp.
            if exc.key is None or exc.key == self.key:
                self._stamp(held, stored, exc)
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
        base = stored if self._unsaved is None else self._unsaved[0]
        self._token = new
        if not self._save(held, new, attempts=SAVE_ATTEMPTS):  # before the lock is released
            # The old refresh token is spent: until a save succeeds, the next
            # refresh spends this one, not the store's (see _catch_up).
            self._unsaved = (base, new)
        logger.debug(
            "%s: refresh done in %.1f ms, new token %s",
            self.key,
            (time.monotonic() - started) * 1e3,
            fingerprint(new.access_token),
        )
        return new

    def _save(self, held: HeldLock, token: Token, *, attempts: int) -> bool:
        """Save under the lock, retrying a failing store; False if it stays behind.

        :raises LockLost: The store holds a newer token than the one we read.
        """
        for attempt in range(attempts):
            if attempt:
                time.sleep(SAVE_RETRY_PAUSE * attempt)
            try:
                held.save(token)
            except LockLost:
                self._token = None
                self._unsaved = None
                raise
            except TokenStoreError as exc:
                error = exc
            else:
                self._unsaved = None
                return True
        logger.error(
            "%s: could not save the refreshed token (%s). The store is behind: this process "
            "holds the only live refresh token and keeps using it until a save succeeds.",
            self.key,
            error.message,
        )
        return False

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
        return stretched(new, self.clock())

    def _stamp(self, held: HeldLock, rejected: Token | None, exc: TokenInvalidated) -> None:
        base = None if self._unsaved is None else self._unsaved[0]
        self._token = None
        self._unsaved = None
        exc.invalidated_at = exc.invalidated_at or self.clock()
        if rejected is None:
            return
        try:
            current = held.load()
            # Stamp only if the store still holds the credential the server
            # rejected (or the older one it replaced, when a save failed): a
            # peer may have logged in again meanwhile.
            if current is not None and (current.is_same(rejected) or current.is_same(base)):
                held.save(current.replace(invalidated_at=exc.invalidated_at))
                logger.warning("%s: refresh credential rejected; stamped invalidated", self.key)
        except (TokenStoreError, LockTimeout) as err:
            # The credential is dead either way; say so rather than the store's trouble.
            logger.warning("%s: could not stamp the rejected credential: %s", self.key, err.message)

    def login(self, token: Token | dict[str, object]) -> Token:
        """Seed the store with a token (or a token-endpoint JSON response).

        Clears an invalidated stamp or a corrupt file for the key.

        :raises ValueError: ``token`` is a dict without an ``access_token``.
        """
        if not isinstance(token, Token):
            token = Token.from_response(token, now=self.clock())
        token = token.replace(invalidated_at=None)
        with self._gate.threads() as deadline, self._gate.processes(deadline) as held:
            with contextlib.suppress(TokenStoreError):  # a corrupt value is what login replaces
                held.load()
            held.save(token)
            self._token = token
            self._unsaved = None
        logger.debug("%s: logged in with token %s", self.key, fingerprint(token.access_token))
        return token

    def logout(self, *, revoke: bool = False, client: OAuthClient | None = None) -> None:
        """Forget the key's token, in memory and in the store.

        :param revoke: First revoke the stored refresh token, then the access
            token, at the server's RFC 7009 revocation endpoint (under the
            key's gate, so no peer can rotate the refresh token meanwhile). If
            the server does not confirm, the local copy is **kept**, so that
            revoking can be tried again (without it, nothing could ever revoke
            the server-side token), and the error is raised.
        :param client: The client to revoke with; default: the grant's.
        :raises RevocationError: The server did not confirm (network, 5xx):
            the token may still be live; nothing was removed.
        :raises InvalidConfiguration: ``revoke`` without a client or a
            revocation endpoint, or the server refused the client.
        :raises TokenStoreError: ``revoke`` and the stored token is unreadable.

        .. versionadded:: 0.2.0
           ``revoke`` and ``client``.
        """
        with self._gate.threads() as deadline, self._gate.processes(deadline) as held:
            if revoke:
                from ._login import revoke_token

                stored = held.load()  # unreadable: raised, nothing to revoke or remove
                if stored is not None:
                    try:
                        revoke_token(client or getattr(self.grant, "client", None), stored)
                    except TokenRotateError as exc:
                        raise exc.for_key(self.key, self.hint) from None
            else:
                with contextlib.suppress(TokenStoreError):
                    held.load()
            held.delete()
            self._token = None
            self._unsaved = None
