"""TokenSource: the refresh gate, its checks, stamping and caching (no network)."""

from __future__ import annotations

import logging
import threading

import pytest
import requests

from requests_tokenrotate import (
    InvalidConfiguration,
    LockTimeout,
    MemoryTokenStore,
    NotLoggedIn,
    RefreshError,
    RefreshPolicy,
    Token,
    TokenInvalidated,
    TokenSource,
)
from requests_tokenrotate._source import MIN_REUSE


class Clock:
    """A settable epoch clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryTokenStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self, key):
        self.loads += 1
        return super().load(key)


class Grant:
    """A callable grant that mints numbered tokens and counts its calls."""

    def __init__(self, clock: Clock, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[Token | None] = []
        self.fail: Exception | None = None

    def __call__(self, stale: Token | None) -> Token:
        self.calls.append(stale)
        if self.fail is not None:
            raise self.fail
        n = len(self.calls)
        now = self.clock()
        return Token(
            f"access-{n}",
            refresh_token=f"refresh-{n}",
            expires_at=now + self.lifetime,
            obtained_at=now,
        )


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def grant(clock):
    return Grant(clock)


def seeded(grant, clock, store=None, **kwargs) -> TokenSource:
    source = TokenSource(grant, store or MemoryTokenStore(), "k", clock=clock, **kwargs)
    source.login(
        Token("access-0", refresh_token="refresh-0", expires_at=clock() + 3600, obtained_at=clock())
    )
    return source


def test_fresh_token_comes_from_memory_without_reading_the_store(grant, clock):
    """The hot path neither calls the grant nor reads the store."""
    store = CountingStore()
    source = seeded(grant, clock, store)
    loads = store.loads
    for _ in range(100):
        assert source.token().access_token == "access-0"
    assert store.loads == loads
    assert grant.calls == []


def test_expired_token_is_refreshed_with_the_stored_refresh_token(grant, clock):
    """An expired token is refreshed once; the grant gets the newest stored token."""
    source = seeded(grant, clock)
    clock.now += 3600
    assert source.token().access_token == "access-1"
    assert [t.refresh_token for t in grant.calls] == ["refresh-0"]
    assert source.store.load("k").access_token == "access-1"
    assert source.token().access_token == "access-1"
    assert len(grant.calls) == 1


def test_warm_store_is_adopted_without_a_grant_call(grant, clock):
    """A second source on the same store uses the stored token: zero refreshes."""
    first = seeded(grant, clock)
    second = TokenSource(grant, first.store, "k", clock=clock)
    assert second.token().access_token == "access-0"
    assert grant.calls == []


def test_refresh_adopts_a_token_a_peer_already_wrote(grant, clock):
    """refresh(stale) returns the fresher stored token with no grant call (check 1)."""
    source = seeded(grant, clock)
    stale = source.token()
    source.store.save(
        "k", Token("peer", refresh_token="peer-r", expires_at=clock() + 600, obtained_at=clock())
    )
    assert source.refresh(stale).access_token == "peer"
    assert grant.calls == []


def test_refresh_of_the_current_token_calls_the_grant(grant, clock):
    """After a 401 the sent token is still current by the clock: refresh anyway."""
    source = seeded(grant, clock)
    sent = source.token()
    assert source.refresh(sent).access_token == "access-1"
    assert source.refresh(sent).access_token == "access-1"  # second caller adopts
    assert len(grant.calls) == 1


def test_expired_peer_token_is_not_adopted(grant, clock):
    """A token a peer wrote that is itself expired is not adopted."""
    source = seeded(grant, clock)
    stale = source.token()
    source.store.save(
        "k", Token("peer", refresh_token="peer-r", expires_at=clock() - 1, obtained_at=clock() - 60)
    )
    assert source.refresh(stale).access_token == "access-1"
    assert grant.calls[0].refresh_token == "peer-r"


def test_nothing_stored_is_not_logged_in_without_a_grant_call(grant, clock):
    """An empty store raises NotLoggedIn, naming the key, without calling the grant."""
    source = TokenSource(
        grant, MemoryTokenStore(), "profile-x", clock=clock, hint="run `tool login`"
    )
    with pytest.raises(NotLoggedIn, match="profile-x") as info:
        source.token()
    assert "run `tool login`" in str(info.value)
    assert info.value.key == "profile-x"
    assert grant.calls == []


def test_dead_credential_is_stamped_and_later_calls_fail_fast(grant, clock):
    """invalid_grant stamps the store; token() then fails with no grant call; login clears it."""
    source = seeded(grant, clock)
    clock.now += 3600
    grant.fail = TokenInvalidated("rejected")
    with pytest.raises(TokenInvalidated) as info:
        source.token()
    assert info.value.key == "k"
    assert source.store.load("k").invalidated_at is not None
    other = TokenSource(grant, source.store, "k", clock=clock)
    for src in (source, other):
        with pytest.raises(TokenInvalidated, match="log in again"):
            src.token()
    assert len(grant.calls) == 1
    grant.fail = None
    source.login({"access_token": "fresh", "refresh_token": "r", "expires_in": 60})
    assert source.store.load("k").invalidated_at is None
    assert other.token().access_token == "fresh"


def test_stamp_is_skipped_when_a_peer_logged_in_meanwhile(grant, clock):
    """Stamp only if the store still holds the rejected refresh token."""
    source = seeded(grant, clock)
    clock.now += 3600

    def peer_logs_in_then_rejected(stale):
        source.store.save(
            "k", Token("peer", refresh_token="peer-r", expires_at=clock() + 60, obtained_at=clock())
        )
        raise TokenInvalidated("rejected")

    source.grant = peer_logs_in_then_rejected
    with pytest.raises(TokenInvalidated):
        source.token()
    assert source.store.load("k").invalidated_at is None
    assert source.token().access_token == "peer"


@pytest.mark.parametrize(
    "failure",
    [
        RefreshError("503", status_code=503),
        requests.ConnectionError("reset"),
        OSError("pipe"),
        ValueError("body had secret-refresh-value"),
    ],
)
def test_transient_failures_never_stamp(grant, clock, failure):
    """Transient grant failures raise RefreshError, stamp nothing, and the next call works."""
    source = seeded(grant, clock)
    clock.now += 3600
    grant.fail = failure
    with pytest.raises(RefreshError) as info:
        source.token()
    assert "secret-refresh-value" not in str(info.value)
    assert source.store.load("k").invalidated_at is None
    grant.fail = None
    assert source.token().access_token == "access-2"


def test_grant_returning_no_token_is_a_configuration_error(clock):
    """A callable grant must return a Token."""
    source = TokenSource(lambda stale: "nope", MemoryTokenStore(), "k", clock=clock)
    source.store.save("k", Token("a", expires_at=clock() - 1))
    with pytest.raises(InvalidConfiguration, match="no Token"):
        source.token()


def test_token_issued_already_expired_is_used_and_warned_once(clock, caplog):
    """A refresh answering an already-stale token does not refresh on every request."""
    grant = Grant(clock, lifetime=-30)  # a skewed clock: exp already in the past
    source = seeded(grant, clock)
    clock.now += 3600
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            source.token()
            clock.now += MIN_REUSE / 40
    assert len(grant.calls) == 1
    assert caplog.text.count("already (nearly) expired") == 1


def test_lock_timeout_never_refreshes_unguarded(grant, clock):
    """While another holder keeps the store lock, refresh raises LockTimeout and calls nothing."""
    source = seeded(grant, clock, lock_timeout=0.05)
    clock.now += 3600
    held, release = threading.Event(), threading.Event()

    def holder():
        with source.store.lock("k", 5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockTimeout):
            source.token()
    finally:
        release.set()
        thread.join(10)
    assert grant.calls == []


def test_max_age_limits_reuse_of_stored_tokens(grant, clock):
    """A stored token older than max_age is not reused; max_age=0 never reuses across sources."""
    first = seeded(grant, clock)
    clock.now += 100
    assert (
        TokenSource(grant, first.store, "k", clock=clock, max_age=200).token().access_token
        == "access-0"
    )
    assert (
        TokenSource(grant, first.store, "k", clock=clock, max_age=50).token().access_token
        == "access-1"
    )
    zero = TokenSource(grant, first.store, "k", clock=clock, max_age=0)
    assert zero.token().access_token == "access-2"
    assert zero.token().access_token == "access-2"  # lives in memory for the process
    assert len(grant.calls) == 2


def test_grace_stops_reuse_just_before_expiry(grant, clock):
    """An explicit grace is honoured up to half the lifetime; the default is 5 s, at most 2.5 %."""
    source = seeded(grant, clock, grace=60)
    clock.now += 3600 - 61
    assert source.token().access_token == "access-0"
    clock.now += 2
    assert source.token().access_token == "access-1"
    short = Grant(clock, lifetime=10)
    src = TokenSource(short, MemoryTokenStore(), "s", clock=clock, grace=60, lock_timeout=1)
    src.login(Token("a", refresh_token="r", expires_at=clock() + 10, obtained_at=clock()))
    clock.now += 4.9
    assert src.token().access_token == "a"
    clock.now += 0.2
    assert src.token().access_token == "access-1"
    default = TokenSource(short, MemoryTokenStore(), "d", clock=clock, lock_timeout=1)
    default.login(Token("b", refresh_token="r", expires_at=clock() + 10, obtained_at=clock()))
    clock.now += 9.7
    assert default.token().access_token == "b"
    clock.now += 0.1
    assert default.token().access_token == "access-2"


def test_logout_forgets_memory_and_store(grant, clock):
    """logout() removes the token; the next call is NotLoggedIn."""
    source = seeded(grant, clock)
    source.logout()
    assert source.store.load("k") is None
    with pytest.raises(NotLoggedIn):
        source.token()


@pytest.mark.parametrize(
    ("margin", "lifetime", "expected"),
    [
        (None, 3600, 300),
        (None, 600, 60),
        (None, 120, 30),
        (None, 30, 15),
        (None, 2, 1),
        (10, 3600, 10),
        (500, 60, 30),
    ],
)
def test_refresh_margin_scales_with_lifetime(margin, lifetime, expected):
    """10 % of the lifetime clamped to 30-300 s, never more than half the lifetime."""
    token = Token("a", expires_at=1000 + lifetime, obtained_at=1000)
    assert RefreshPolicy.coerce(margin).margin_for(token) == expected


@pytest.mark.parametrize("bad", [-1, "10", True])
def test_refresh_margin_rejects_nonsense(bad):
    """A negative or non-numeric margin is InvalidConfiguration."""
    with pytest.raises(InvalidConfiguration):
        RefreshPolicy.coerce(bad)
