"""The store contract as the gate uses it: lease check, compare-and-set, failed saves."""

from __future__ import annotations

import contextlib
import logging
import math

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate import (
    FileTokenStore,
    LockLost,
    MemoryTokenStore,
    Token,
    TokenInvalidated,
    TokenSource,
    TokenStoreError,
)
from requests_tokenrotate.testing import LocalIdP


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Numbered:
    """A callable grant that mints numbered tokens and records what it spent."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.spent: list[str | None] = []

    def __call__(self, stale: Token | None) -> Token:
        self.spent.append(stale.refresh_token if stale else None)
        n = len(self.spent)
        now = self.clock()
        return Token(f"a{n}", refresh_token=f"r{n}", expires_at=now + 60, obtained_at=now)


class FlakyStore:
    """A real file store whose writes can be made to fail (a full or read-only disk)."""

    def __init__(self, inner: FileTokenStore) -> None:
        self.inner = inner
        self.failing = False

    def load(self, key):
        return self.inner.load(key)

    def save(self, key, token):
        if self.failing:
            raise TokenStoreError("cannot write token file: No space left on device", path="x")
        self.inner.save(key, token)

    def delete(self, key):
        self.inner.delete(key)

    def keys(self):
        return self.inner.keys()

    @contextlib.contextmanager
    def lock(self, key, timeout):
        with self.inner.lock(key, timeout):
            yield rt.KeyLock(self, key)


class LeaseStore(MemoryTokenStore):
    """A memory store whose held lock reports a short lease and can lose a CAS."""

    def __init__(self, remaining: float = math.inf) -> None:
        super().__init__()
        self.left = remaining
        self.moved_on: Token | None = None

    @contextlib.contextmanager
    def lock(self, key, timeout):
        store = self

        class Held(rt.KeyLock):
            __slots__ = ()

            def remaining(self) -> float:
                return store.left

            def save(self, token: Token) -> None:
                if store.moved_on is not None:
                    store.save(key, store.moved_on)  # a peer wrote meanwhile
                    raise LockLost("the key changed under the lock", key=key)
                super().save(token)

        with super().lock(key, timeout):
            yield Held(self, key)


@pytest.fixture
def clock():
    return Clock()


def seeded(grant, store, clock) -> TokenSource:
    source = TokenSource(grant, store, "k", clock=clock)
    source.login(Token("a0", refresh_token="r0", expires_at=clock() + 60, obtained_at=clock()))
    return source


def test_after_a_failed_save_the_next_refresh_spends_the_token_in_memory(tmp_path, clock, caplog):
    """A failed save never makes the process spend the store's spent refresh token."""
    grant = Numbered(clock)
    store = FlakyStore(FileTokenStore(tmp_path))
    source = seeded(grant, store, clock)
    clock.now += 120
    store.failing = True
    with caplog.at_level(logging.ERROR):
        assert source.token().access_token == "a1"
    assert "store is behind" in caplog.text
    assert store.load("k").refresh_token == "r0"  # the disk still holds the spent one
    clock.now += 120
    assert source.token().access_token == "a2"
    assert grant.spent == ["r0", "r1"]  # r1 from memory, never r0 twice
    store.failing = False
    clock.now += 120
    assert source.token().access_token == "a3"
    assert grant.spent == ["r0", "r1", "r2"]
    assert store.load("k").refresh_token == "r3"


def test_store_catches_up_with_the_memory_token_before_anyone_refreshes(tmp_path, clock):
    """Once the store accepts writes again, the newest token is saved under the lock."""
    grant = Numbered(clock)
    store = FlakyStore(FileTokenStore(tmp_path))
    source = seeded(grant, store, clock)
    clock.now += 120
    store.failing = True
    source.token()
    store.failing = False
    # Another thread of ours asks for a refresh of a token that is no longer current.
    assert source.refresh(Token("a0", refresh_token="r0")).access_token == "a1"
    assert store.load("k").refresh_token == "r1"
    assert grant.spent == ["r0"]


def test_a_peer_login_after_a_failed_save_wins_over_the_memory_token(tmp_path, clock):
    """The memory token is the newest only while the store still holds what it replaced."""
    grant = Numbered(clock)
    store = FlakyStore(FileTokenStore(tmp_path))
    source = seeded(grant, store, clock)
    clock.now += 120
    store.failing = True
    source.token()
    store.failing = False
    store.inner.save("k", Token("login", refresh_token="rL", expires_at=clock() + 600))
    clock.now += 120
    assert source.token().access_token == "login"
    assert grant.spent == ["r0"]


def test_failed_stamp_does_not_mask_the_dead_credential(tmp_path, clock):
    """invalid_grant stays TokenInvalidated even when the stamp cannot be written."""
    store = FlakyStore(FileTokenStore(tmp_path))

    def rejected(stale):
        raise TokenInvalidated("invalid_grant")

    source = seeded(rejected, store, clock)
    clock.now += 120
    store.failing = True
    with pytest.raises(TokenInvalidated):
        source.token()


def test_a_lease_shorter_than_the_call_makes_no_call(clock):
    """The gate checks the lease right before the token call and gives up with LockLost."""
    grant = Numbered(clock)
    store = LeaseStore(remaining=1.0)
    source = seeded(grant, store, clock)
    clock.now += 120
    with pytest.raises(LockLost, match="not calling the token endpoint"):
        source.token()
    assert grant.spent == []
    store.left = math.inf
    assert source.token().access_token == "a1"


def test_a_rejected_compare_and_set_is_reported_and_overwrites_nothing(clock):
    """A holder whose save is refused raises LockLost; the newer token stays and is adopted next."""
    grant = Numbered(clock)
    store = LeaseStore()
    source = seeded(grant, store, clock)
    clock.now += 120
    newer = Token("peer", refresh_token="rp", expires_at=clock() + 600, obtained_at=clock())
    store.moved_on = newer
    with pytest.raises(LockLost):
        source.token()
    assert store.load("k").access_token == "peer"
    store.moved_on = None
    assert source.token().access_token == "peer"
    assert grant.spent == ["r0"]


def test_grants_deadline_is_what_the_lease_must_cover(clock):
    """A grant's ``deadline`` attribute sets how much lease the gate demands."""
    grant = Numbered(clock)
    grant.deadline = 0.5  # type: ignore[attr-defined]
    store = LeaseStore(remaining=1.0)
    source = seeded(grant, store, clock)
    clock.now += 120
    assert source.token().access_token == "a1"


def test_a_store_whose_lock_yields_nothing_still_works(clock):
    """Stores written against 0.1 (``lock()`` yields None) get a KeyLock from the gate."""

    class OldStore(MemoryTokenStore):
        @contextlib.contextmanager
        def lock(self, key, timeout):
            with super().lock(key, timeout):
                yield None

    grant = Numbered(clock)
    source = seeded(grant, OldStore(), clock)
    clock.now += 120
    assert source.token().access_token == "a1"
    assert source.store.load("k").access_token == "a1"


def test_failed_save_against_a_strict_rotation_server_spends_no_token_twice(tmp_path):
    """End to end: disk full after a real refresh, then another refresh: 0 invalid_grant."""
    with LocalIdP(access_token_lifetime=60) as idp:
        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2))
        store = FlakyStore(FileTokenStore(tmp_path))
        source = TokenSource(rt.RefreshTokenGrant(client), store, "k")
        source.login(Token.from_response(idp.issue_tokens()).replace(expires_at=0.0))
        store.failing = True
        first = source.token()
        second = source.refresh(first)
        store.failing = False
        third = source.refresh(second)
        assert len({first.access_token, second.access_token, third.access_token}) == 3
        assert idp.counters()["invalid_grant"] == 0
        assert store.load("k").is_same(third)
