"""The shared-store suite: the same gate and fleet behaviours for every store that spans processes.

"Hosts" are process groups with their own HOME and token directory; they share
only the store (a token directory for the file store, a database for
PostgreSQL, a Redis server) and the IdP. ``wrapped-redis`` is Redis seen
through a store that only delegates: the gate uses a store only through the
TokenStore protocol, so the wrapper must behave exactly like what it wraps.
A new store adds a param here, not a copy of these tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers.fleet import Fleet
from helpers.fleet_worker import Delegating

import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec
from requests_tokenrotate.testing import LocalIdP

LIFETIME = 2.0
#: Stores whose worker processes reach them by spec alone (the wrapper is in-process).
FLEET_STORES = ["file", "postgres", "redis"]
#: Stores whose lock is released when its holder dies (a Redis lease waits for its end:
#: tests/test_fleet.py covers that).
RELEASED_AT_DEATH = ["file", "postgres"]


class Shared:
    """A store as the fleet names it (``spec``) and as the test uses it (``store``)."""

    def __init__(self, spec: str, kind: str, *, wrap: bool = False) -> None:
        self.spec = spec
        self.kind = kind
        self.wrap = wrap
        self.raw = store_from_spec(spec)
        self.store = Delegating(self.raw) if wrap else self.raw

    def __repr__(self) -> str:
        return f"Shared({self.kind})"

    def corrupt(self, key: str, raw: bytes) -> None:
        """Write ``raw`` where the store keeps ``key`` (file and Redis only)."""
        if self.kind == "file":
            self.raw.path(key).write_bytes(raw)
        else:
            self.raw._client.set(self.raw.token_key(key), raw)

    def where(self, key: str) -> str:
        """What an error about ``key`` names."""
        return str(self.raw.path(key)) if self.kind == "file" else self.raw.token_key(key)


@pytest.fixture(params=["file", "postgres", "redis", "wrapped-redis"])
def shared_store(request, tmp_path):
    if request.param == "file":
        return Shared(str(tmp_path / "shared-tokens"), "file")
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        return Shared(server.dsn(), "postgres")
    url = request.getfixturevalue("redis_url")
    return Shared(url, "redis", wrap=request.param == "wrapped-redis")


@pytest.fixture
def key(request):
    """A key of the test's own: the PostgreSQL table is shared by the whole session."""
    return "k-" + request.node.name


def seed(shared: Shared, idp: LocalIdP, key: str, *, expired: bool = True) -> rt.Token:
    token = rt.Token.from_response(idp.issue_tokens())
    if expired:
        token = token.replace(expires_at=time.time() - 1)
    rt.TokenSource(lambda stale: stale, shared.store, key).login(token)
    idp.reset_counters()
    return token


@pytest.mark.parametrize("shared_store", FLEET_STORES, indirect=True)
def test_two_hosts_storm_one_expired_token_makes_one_refresh(shared_store, fleet, key):
    """2 hosts x 4 processes x 4 threads on one expired token: 1 refresh, 0 invalid_grant."""
    with LocalIdP(access_token_lifetime=60, token_latency=0.3) as idp:
        seed(shared_store, idp, key)
        workers = fleet(shared_store.spec, idp.token_url, key)
        workers.start(hosts=2, processes=4, threads=4)
        results = workers.results()
        assert [r["errors"] for r in results] == [{}] * 8
        assert sum(r["ok"] for r in results) == 32
        assert len({t for r in results for t in r["tokens"]}) == 1
        assert idp.refresh_calls == 1
        assert idp.invalid_grant == 0


@pytest.mark.parametrize("shared_store", FLEET_STORES, indirect=True)
def test_expiry_windows_refresh_once_per_lifetime(shared_store, fleet, key):
    """6 windows of 2 s tokens across 2 hosts x 2 processes: refreshes = lifetimes (+-1)."""
    duration = 6 * LIFETIME
    with LocalIdP(access_token_lifetime=LIFETIME) as idp:
        seeded = seed(shared_store, idp, key, expired=False)
        workers = fleet(shared_store.spec, idp.token_url, key)
        went = workers.start(hosts=2, processes=2, threads=2, duration=duration)
        results = workers.results()
        assert [r["errors"] for r in results] == [{}] * 4
        assert idp.invalid_grant == 0
        # Lifetimes that ended while the workers ran, counted from the seeded token's issue.
        # Never more refreshes than that (+1); fewer only by the drift each refresh adds
        # to its window (its own latency: ~30-100 ms for PostgreSQL's two connections).
        lifetimes = (went + duration - seeded.obtained_at) / LIFETIME
        assert lifetimes * 0.85 - 1 <= idp.refresh_calls <= lifetimes + 1, lifetimes


HOLDER = """
import sys, time
import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec
store = store_from_spec(sys.argv[1])
with store.lock(sys.argv[2], 10) as held:
    held.load()
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("shared_store", RELEASED_AT_DEATH, indirect=True)
def test_holder_killed_mid_refresh_releases_the_lock(shared_store, key):
    """A holder killed while holding the lock: the next process gets it at once, the store whole."""
    with LocalIdP(access_token_lifetime=60) as idp:
        seed(shared_store, idp, key)
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, shared_store.spec, key],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "locked"
            with pytest.raises(rt.LockTimeout), shared_store.store.lock(key, 0.2):
                pass  # it is really held
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            child.stdout.close()
        client = rt.OAuthClient(
            token_url=idp.token_url, client_id="cli", timeout=(2, 2), deadline=4
        )
        # Well inside PostgreSQL's lease (45 s): the server released it with the session.
        source = rt.TokenSource(rt.RefreshTokenGrant(client), shared_store.store, key,
                                lock_timeout=5)  # fmt: skip
        assert source.token().access_token
        assert idp.refresh_calls == 1
        assert idp.invalid_grant == 0


def make_source(idp: LocalIdP, store: rt.TokenStore, key: str, **kwargs) -> rt.TokenSource:
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2))
    return rt.TokenSource(rt.RefreshTokenGrant(client), store, key, **kwargs)


def expired(response: dict) -> rt.Token:
    """The IdP's answer as a token our clock already considers expired."""
    token = rt.Token.from_response(response)
    return token.replace(expires_at=time.time() - 1)


def test_fifty_threads_one_expired_token_make_one_refresh(idp, shared_store, key):
    """50 threads racing one expired token: exactly 1 refresh; all get the same new token."""
    source = make_source(idp, shared_store.store, key)
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


def test_eight_processes_by_four_threads_make_one_refresh(idp, shared_store, tmp_path, key):
    """8 real processes x 4 threads on one store: 1 refresh call, 0 invalid_grant."""
    idp.token_latency = 0.3  # widen the race window so the workers really overlap
    store = shared_store.store
    make_source(idp, store, key).login(expired(idp.issue_tokens()))
    idp.reset_counters()
    options = {"wrap": shared_store.wrap, "key": key}
    with Fleet(tmp_path / "hosts", shared_store.spec, idp.token_url, **options) as f:
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
    after = make_source(idp, store, key)
    assert after.refresh(after.token()).access_token
    assert idp.refresh_calls == 2


def test_peer_refreshed_token_is_adopted_with_zero_network_calls(idp, shared_store, key):
    """refresh(stale) adopts what another process already wrote to the store."""
    store = shared_store.store
    ours = make_source(idp, store, key)
    ours.login(idp.issue_tokens())
    stale = ours.token()
    peer = make_source(idp, store, key)
    peer.refresh(stale)
    idp.reset_counters()
    assert ours.refresh(stale).access_token == store.load(key).access_token
    assert idp.token_calls == 0


def test_invalid_grant_stamps_and_later_calls_skip_the_network(idp, shared_store, key):
    """invalid_grant: TokenInvalidated, store stamped, next token() without a call; login clears."""
    store = shared_store.store
    source = make_source(idp, store, key, hint="run `tool login`")
    response = idp.issue_tokens()
    source.login(expired(response))
    idp.revoke(response["refresh_token"])
    with pytest.raises(rt.TokenInvalidated, match="run `tool login`"):
        source.token()
    assert store.load(key).invalidated_at is not None
    calls = idp.token_calls
    for fresh in (source, make_source(idp, store, key)):
        with pytest.raises(rt.TokenInvalidated):
            fresh.token()
    assert idp.token_calls == calls
    source.login(idp.issue_tokens())
    assert store.load(key).invalidated_at is None
    assert make_source(idp, store, key).token().access_token


@pytest.mark.parametrize(
    "mode", ["500", "503", "429", "html", "hang", "reset", "invalid_json", "no_access_token"]
)
def test_transient_failures_raise_refresh_error_and_stamp_nothing(idp, shared_store, mode, key):
    """500 / HTML / timeout / reset and friends: RefreshError, no stamp; the next call succeeds."""
    idp.hang_seconds = 3
    store = shared_store.store
    source = make_source(idp, store, key)
    source.login(expired(idp.issue_tokens()))
    idp.fail_next(1, mode)
    with pytest.raises(rt.RefreshError):
        source.token()
    assert store.load(key).invalidated_at is None
    assert source.token().access_token
    assert idp.refresh_calls == 1


@pytest.mark.parametrize("shared_store", ["file", "redis", "wrapped-redis"], indirect=True)
def test_corrupt_stored_value_is_reported_until_login_replaces_it(idp, shared_store, key):
    """A corrupt value: token() raises TokenStoreError naming it (value untouched); login() recovers."""
    store = shared_store.store
    source = make_source(idp, store, key)
    source.login(expired(idp.issue_tokens()))
    shared_store.corrupt(key, b'{"version": 1, "tok')
    for _ in range(2):
        with pytest.raises(rt.TokenStoreError) as info:
            make_source(idp, store, key).token()
        assert shared_store.where(key) in str(info.value)
    with pytest.raises(rt.TokenStoreError):
        store.load(key)  # still there, still corrupt
    assert idp.token_calls == 0
    source.login(idp.issue_tokens())
    assert make_source(idp, store, key).token().access_token
    shared_store.corrupt(key, b"")
    source.logout()
    with pytest.raises(rt.NotLoggedIn):
        make_source(idp, store, key).token()
    assert key not in store.keys()  # noqa: SIM118  # a store, not a dict
