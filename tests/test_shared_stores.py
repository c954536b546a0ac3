"""The refresh gate end to end, once per store: every shared store passes the same suite.

``shared_store`` is parametrised over the stores (file, redis, and redis seen
through a wrapper that only delegates: the gate uses a store only through the
TokenStore protocol, so the wrapper must behave exactly like what it wraps).
A new store adds a param here, not a copy of these tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from helpers.fleet import Fleet
from helpers.fleet_worker import Delegating

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP


class SharedStore:
    """A store under test, how worker processes reach it, and how to corrupt a value."""

    def __init__(
        self,
        name: str,
        store: rt.TokenStore,
        spec: str,
        corrupt: Callable[[str, bytes], None],
        where: Callable[[str], str],
        *,
        wrap: bool = False,
    ) -> None:
        self.name = name
        self.store = store
        self.spec = spec
        self.corrupt = corrupt
        self.where = where  # what an error names for a key
        self.wrap = wrap

    def __repr__(self) -> str:
        return f"SharedStore({self.name})"


def _file(tmp_path) -> SharedStore:
    store = rt.FileTokenStore(tmp_path / "tokens")

    def corrupt(key: str, raw: bytes) -> None:
        store.path(key).write_bytes(raw)

    return SharedStore("file", store, str(store.directory), corrupt, lambda k: str(store.path(k)))


def _redis(url: str, *, wrap: bool) -> SharedStore:
    store = rt.RedisTokenStore(url)

    def corrupt(key: str, raw: bytes) -> None:
        store._client.set(store.token_key(key), raw)

    outer = Delegating(store) if wrap else store
    name = "wrapped-redis" if wrap else "redis"
    return SharedStore(name, outer, url, corrupt, store.token_key, wrap=wrap)


@pytest.fixture(params=["file", "redis", "wrapped-redis"])
def shared_store(request, tmp_path) -> SharedStore:
    if request.param == "file":
        return _file(tmp_path)
    url = request.getfixturevalue("redis_url")
    return _redis(url, wrap=request.param == "wrapped-redis")


def make_source(idp: LocalIdP, store: rt.TokenStore, **kwargs) -> rt.TokenSource:
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2))
    return rt.TokenSource(rt.RefreshTokenGrant(client), store, "default", **kwargs)


def expired(response: dict) -> rt.Token:
    """The IdP's answer as a token our clock already considers expired."""
    token = rt.Token.from_response(response)
    return token.replace(expires_at=time.time() - 1)


def test_fifty_threads_one_expired_token_make_one_refresh(idp, shared_store):
    """50 threads racing one expired token: exactly 1 refresh; all get the same new token."""
    source = make_source(idp, shared_store.store)
    source.login(expired(idp.issue_tokens()))
    idp.reset_counters()
    barrier = threading.Barrier(50)
    seen: list[str] = []

    def run() -> None:
        barrier.wait(10)
        seen.append(source.token().access_token)

    threads = [threading.Thread(target=run) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert idp.refresh_calls == 1
    assert idp.token_calls == 1
    assert len(seen) == 50
    assert len(set(seen)) == 1


def test_eight_processes_by_four_threads_make_one_refresh(idp, shared_store, tmp_path):
    """8 real processes x 4 threads on one store: 1 refresh call, 0 invalid_grant."""
    idp.token_latency = 0.3  # widen the race window so the workers really overlap
    store = shared_store.store
    make_source(idp, store).login(expired(idp.issue_tokens()))
    idp.reset_counters()
    with Fleet(tmp_path / "hosts", shared_store.spec, idp.token_url, wrap=shared_store.wrap) as f:
        results = f.run(hosts=1, processes=8, threads=4)
    assert len(results) == 32
    assert [r for r in results if "error" in r] == []
    assert idp.token_calls == 1
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0
    assert len({r["token"] for r in results}) == 1
    # Bracket check: the callers were in flight together, so the race was real.
    first_end = min(r["end"] for r in results)
    assert sum(r["start"] < first_end for r in results) >= 16
    # The stored refresh token is the live one: it refreshes again.
    after = make_source(idp, store)
    assert after.refresh(after.token()).access_token
    assert idp.refresh_calls == 2


def test_peer_refreshed_token_is_adopted_with_zero_network_calls(idp, shared_store):
    """refresh(stale) adopts what another process already wrote to the store."""
    store = shared_store.store
    ours = make_source(idp, store)
    ours.login(idp.issue_tokens())
    stale = ours.token()
    peer = make_source(idp, store)
    peer.refresh(stale)
    idp.reset_counters()
    assert ours.refresh(stale).access_token == store.load("default").access_token
    assert idp.token_calls == 0


def test_invalid_grant_stamps_and_later_calls_skip_the_network(idp, shared_store):
    """invalid_grant: TokenInvalidated, store stamped, next token() without a call; login clears."""
    store = shared_store.store
    source = make_source(idp, store, hint="run `tool login`")
    response = idp.issue_tokens()
    source.login(expired(response))
    idp.revoke(response["refresh_token"])
    with pytest.raises(rt.TokenInvalidated, match="run `tool login`"):
        source.token()
    assert store.load("default").invalidated_at is not None
    calls = idp.token_calls
    for fresh in (source, make_source(idp, store)):
        with pytest.raises(rt.TokenInvalidated):
            fresh.token()
    assert idp.token_calls == calls
    source.login(idp.issue_tokens())
    assert store.load("default").invalidated_at is None
    assert make_source(idp, store).token().access_token


@pytest.mark.parametrize(
    "mode", ["500", "503", "429", "html", "hang", "reset", "invalid_json", "no_access_token"]
)
def test_transient_failures_raise_refresh_error_and_stamp_nothing(idp, shared_store, mode):
    """500 / HTML / timeout / reset and friends: RefreshError, no stamp; the next call succeeds."""
    idp.hang_seconds = 3
    store = shared_store.store
    source = make_source(idp, store)
    source.login(expired(idp.issue_tokens()))
    idp.fail_next(1, mode)
    with pytest.raises(rt.RefreshError):
        source.token()
    assert store.load("default").invalidated_at is None
    assert source.token().access_token
    assert idp.refresh_calls == 1


def test_corrupt_stored_value_is_reported_until_login_replaces_it(idp, shared_store):
    """A corrupt value: token() raises TokenStoreError naming it (value untouched); login() recovers."""
    store = shared_store.store
    source = make_source(idp, store)
    source.login(expired(idp.issue_tokens()))
    shared_store.corrupt("default", b'{"version": 1, "tok')
    for _ in range(2):
        with pytest.raises(rt.TokenStoreError) as info:
            make_source(idp, store).token()
        assert shared_store.where("default") in str(info.value)
    with pytest.raises(rt.TokenStoreError):
        store.load("default")  # still there, still corrupt
    assert idp.token_calls == 0
    source.login(idp.issue_tokens())
    assert make_source(idp, store).token().access_token
    shared_store.corrupt("default", b"")
    source.logout()
    with pytest.raises(rt.NotLoggedIn):
        make_source(idp, store).token()
    assert store.keys() == []


def test_a_holder_whose_save_is_refused_overwrites_nothing(idp, shared_store):
    """A save under the lock after someone else wrote the key: LockLost (lease stores) or the
    write lands (stores whose lock excludes every writer); never a silent mix of the two."""
    store = shared_store.store
    source = make_source(idp, store)
    source.login(idp.issue_tokens())
    with store.lock("default", 5) as held:
        held = held or rt.KeyLock(store, "default")
        held.load()
        newer = rt.Token.from_response(idp.issue_tokens())
        store.save("default", newer)  # a tool writes outside the lock
        mine = rt.Token("mine", refresh_token="r-mine", expires_at=2e9, obtained_at=1e9)
        if shared_store.name == "file":
            held.save(mine)  # the kernel lock is the whole guarantee: last writer wins
            assert store.load("default").is_same(mine)
        else:
            with pytest.raises(rt.LockLost):
                held.save(mine)
            assert store.load("default").is_same(newer)
