"""Freshness: how long a token is reused, and how early it is refreshed. No I/O.

One concept, two distances before a token's expiry, both capped at half the
token's lifetime so that a short-lived token is not refreshed on every use:

- the **grace** (:func:`grace_for`, ``TokenSource(grace=)``): a token in memory
  or in the store is no longer reused once it has less than this left. It is
  small (5 s, at most 2.5 % of the lifetime: a 2 s token is used for 1.95 s)
  because a request that meets an expired token is retried after a 401 anyway;
- the **margin** (:class:`RefreshPolicy`, the transport's ``refresh_margin=``):
  before sending a body that *cannot* be replayed, the token is refreshed this
  early, because after a 401 such a request cannot be resent. It is larger
  (10 % of the lifetime, clamped to 30 s - 300 s).

So the margin only ever brings a refresh forward for streamed bodies; every
other request uses a token until its grace. A token that arrives already
within its grace (a server lifetime shorter than our grace, or a skewed clock)
is used for :data:`MIN_REUSE` seconds instead of being refreshed on every
request (:func:`stretched`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._record import Record
from .exceptions import InvalidConfiguration

if TYPE_CHECKING:
    from ._token import Token

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_GRACE_FRACTION",
    "DEFAULT_MARGIN_FRACTION",
    "DEFAULT_MAX_MARGIN",
    "DEFAULT_MIN_MARGIN",
    "MIN_REUSE",
    "RefreshPolicy",
    "grace_for",
    "is_adoptable",
    "is_usable",
    "reuse_until",
    "stretched",
]

#: Seconds before expiry at which a stored token stops being reused.
DEFAULT_GRACE: Final = 5.0
#: ... but never more than this share of the token's lifetime: a 2 s token is
#: used for 1.95 s, so refreshes track the lifetimes elapsed (bench/soak.py);
#: a token that expires in flight meets the reactive retry.
DEFAULT_GRACE_FRACTION: Final = 0.025
#: The scaled refresh margin: 10 % of the lifetime, clamped to 30 s - 300 s and
#: never more than half the lifetime.
DEFAULT_MARGIN_FRACTION: Final = 0.1
DEFAULT_MIN_MARGIN: Final = 30.0
DEFAULT_MAX_MARGIN: Final = 300.0
#: How long a token that arrives already stale is used before asking again.
MIN_REUSE: Final = 10.0


def grace_for(token: Token, grace: float | None = None) -> float:
    """Seconds before ``token``'s expiry at which it stops being reused.

    :param grace: As configured (``TokenSource(grace=)``): None for the
        default (5 s, at most 2.5 % of the lifetime); a number is used as
        given, up to half the lifetime.
    """
    lifetime = token.lifetime
    if grace is not None:
        return grace if lifetime is None else max(min(grace, lifetime / 2), 0.0)
    if lifetime is None:
        return DEFAULT_GRACE
    return max(min(DEFAULT_GRACE, lifetime * DEFAULT_GRACE_FRACTION), 0.0)


def reuse_until(token: Token, grace: float | None = None) -> float | None:
    """The instant (epoch seconds) ``token`` stops being reused; None: never by the clock."""
    expires_at = token.expires_at
    return None if expires_at is None else expires_at - grace_for(token, grace)


def is_usable(
    token: Token | None,
    now: float,
    *,
    grace: float | None = None,
    max_age: float | None = None,
    from_store: bool = False,
) -> bool:
    """True if ``token`` may be sent at ``now``: not invalidated and not within its grace.

    :param max_age: A token read ``from_store`` older than this is not reused.
    """
    if token is None or token.invalidated_at is not None:
        return False
    if from_store and max_age is not None and now - token.obtained_at >= max_age:
        return False
    until = reuse_until(token, grace)
    return until is None or until > now


def is_adoptable(
    candidate: Token | None,
    stale: Token | None,
    now: float,
    *,
    grace: float | None = None,
    max_age: float | None = None,
    from_store: bool = False,
) -> bool:
    """True if ``candidate`` is usable and is not the ``stale`` token being replaced."""
    return is_usable(candidate, now, grace=grace, max_age=max_age, from_store=from_store) and not (
        stale is not None and candidate is not None and candidate.is_same(stale)
    )


def stretched(token: Token, now: float) -> Token:
    """``token``, already (nearly) expired on arrival, made usable for :data:`MIN_REUSE` s."""
    return token.replace(obtained_at=now, expires_at=now + MIN_REUSE)


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
        self.margin = margin

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

    def needs_refresh(self, token: Token, now: float, *, replayable: bool) -> bool:
        """True if a body that cannot be ``replayable`` must wait for a fresher ``token``."""
        return not replayable and token.expires_within(self.margin_for(token), now=now)
