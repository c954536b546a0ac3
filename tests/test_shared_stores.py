"""The shared-store suite: the same gate and fleet behaviours for every store that spans processes.

"Hosts" are process groups with their own HOME and token directory; they share
only the store (a token directory for the file store, a database for
PostgreSQL, a Redis server) and the IdP. Every worker is a
tests/helpers/fleet_worker.py process started by the ``fleet`` fixture.
``wrapped-redis`` is Redis seen through a store that only delegates: the gate
uses a store only through the TokenStore protocol, so the wrapper must behave
exactly like what it wraps. A new store adds a param here, not a copy of
these tests.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers.fleet import read_line
from helpers.fleet_worker import Delegating

import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec
from requests_tokenrotate.testing import LocalIdP

LIFETIME = 2.0
#: Stores whose worker processes reach them by spec alone (the wrapper is in-process).
FLEET_STORES = ["file", "postgres", "redis"]
#: Stores whose lock is a lease that a live but stopped holder can lose.
LEASED = ["postgres", "redis"]
#: Worker options of the fleet tests: a grant deadline below the lock timeout.
PATIENT = {"lock_timeout": 20, "deadline": 15}


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

    def is_locked(self, key: str) -> bool:
        """Whether another holder has ``key``'s lock (taken and let go at once if free)."""
        try:
            with self.store.lock(key, 0.2):
                return False
        except rt.LockTimeout:
            return True


@pytest.fixture(params=["file", "postgres", "redis", "wrapped-redis"])
def shared_store(request, tmp_path):
    if request.param == "file":
        yield Shared(str(tmp_path / "shared-tokens"), "file")
        return
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        yield Shared(server.dsn(), "postgres")
        return
    url = request.getfixturevalue("redis_url")
    shared = Shared(url, "redis", wrap=request.param == "wrapped-redis")
    yield shared
    shared.raw.close()  # its connections, not left to the garbage collector


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


def stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state T in /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
    return all(state == "T" for state in states)


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` (a state check, not a stand-in for synchronisation), bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("shared_store", FLEET_STORES, indirect=True)
def test_two_hosts_storm_one_expired_token_makes_one_refresh(shared_store, fleet, key):
    """2 hosts x 4 processes x 4 threads GET through rt.mount on one expired token, strict
    rotation: 1 refresh, 0 invalid_grant, every caller 200 with the same token."""
    with LocalIdP(access_token_lifetime=60, token_latency=0.3) as idp:
        seed(shared_store, idp, key)
        workers = fleet(shared_store.spec, idp.token_url, key=key, **PATIENT)
        results = workers.run(hosts=2, processes=4, threads=4, resource=idp.resource_url)
        counters = idp.counters()
    assert len(results) == 32
    assert [r for r in results if r.get("status") != 200] == []
    assert len({r["token"] for r in results}) == 1
    assert counters["refresh_calls"] == 1
    assert counters["token_calls"] == 1
    assert counters["invalid_grant"] == 0
    first_end = min(r["end"] for r in results)
    assert sum(r["start"] < first_end for r in results) >= 16  # the race was real


#: How much slower than the token lifetime a store's refreshes may drift: each
#: refresh adds its own latency to its window (~30-100 ms for PostgreSQL's two
#: connections).
DRIFT = {"file": 0.0, "postgres": 0.15, "redis": 0.0}


@pytest.mark.parametrize(
    ("shared_store", "windows"),
    [("file", 6), ("postgres", 6), ("redis", 20)],  # 20 windows (~40 s) once, on Redis
    indirect=["shared_store"],
)
def test_expiry_windows_refresh_once_per_lifetime(shared_store, fleet, key, windows):
    """2 s tokens across 2 hosts x 2 processes x 2 threads: refreshes = lifetimes (+-1)."""
    duration = windows * LIFETIME
    with LocalIdP(access_token_lifetime=LIFETIME) as idp:
        seeded = seed(shared_store, idp, key, expired=False)
        workers = fleet(shared_store.spec, idp.token_url, key=key, **PATIENT)
        options = {"resource": idp.resource_url, "duration": duration, "interval": 0.1}
        results = workers.run(hosts=2, processes=2, threads=2, **options)
        counters = idp.counters()
    assert [r for r in results if r.get("status") != 200] == []
    assert counters["invalid_grant"] == 0
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    assert elapsed / LIFETIME >= windows
    # Lifetimes that ended while the workers ran, counted from the seeded token's issue.
    lifetimes = (workers.went + duration - seeded.obtained_at) / LIFETIME
    low = lifetimes * (1 - DRIFT[shared_store.kind]) - 1
    assert low <= counters["refresh_calls"] <= lifetimes + 1, (counters, lifetimes)


@pytest.mark.parametrize("shared_store", FLEET_STORES, indirect=True)
def test_holder_killed_mid_refresh_frees_the_key(shared_store, fleet, key):
    """SIGKILL inside the token call: the others proceed (file, PostgreSQL: at once; Redis:
    once the lease ends); one refresh, 0 invalid_grant, the store whole."""
    lease = 3.0
    # Released at death: within the fleet's lock timeout, well inside PostgreSQL's lease.
    lock_timeout = lease + 10 if shared_store.kind == "redis" else 5
    store = shared_store.store
    with LocalIdP(access_token_lifetime=60) as idp:
        before = seed(shared_store, idp, key)
        idp.hang_seconds = 60
        idp.fail_next(1, "hang")  # the holder's call is held by the server, never processed
        options = {"key": key, "lease": lease, "deadline": 1.0, "lock_timeout": lock_timeout}
        workers = fleet(shared_store.spec, idp.token_url, **options)
        holder = workers.spawn(0, threads=1, deadline=lease - 0.5)  # killed before it gives up
        workers.send(holder)
        wait_for(lambda: idp.token_calls == 1, 10, "the holder's token call")
        assert shared_store.is_locked(key)  # it is really held
        if shared_store.kind == "redis":
            assert store._client.pttl(store.lock_key(key)) > 0
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        results = workers.run(hosts=2, processes=2, threads=2)
        waited = time.monotonic() - started
        counters = idp.counters()
    assert [r for r in results if "error" in r] == []
    assert len({r["token"] for r in results}) == 1
    assert counters["refresh_calls"] == 1
    assert counters["invalid_grant"] == 0
    assert waited < lease + 10
    after = store.load(key)  # whole: decodes, and is the refresh the others made
    assert after is not None
    assert not after.is_same(before)
    assert after.refresh_token != before.refresh_token


#: What the stopped holder's call returns once continued, per store and pause point.
#: After the locked read it must give up (LockLost); after lock() alone, Redis reads
#: and adopts the peer's token, while PostgreSQL's session ended with its lease, so
#: the locked read itself fails (typed).
RESUMED = {
    ("redis", "lock"): "adopts",
    ("redis", "load"): "LockLost",
    ("postgres", "lock"): "TokenStoreError",
    ("postgres", "load"): "LockLost",
}


@pytest.mark.parametrize("pause_at", ["lock", "load"])
@pytest.mark.parametrize("shared_store", LEASED, indirect=True)
def test_holder_stopped_past_its_lease_makes_no_call_and_overwrites_nothing(
    shared_store, fleet, key, pause_at
):
    """SIGSTOP after lock() (or after the locked read) until a peer refreshes; SIGCONT: no call."""
    lease = 2.0
    store = shared_store.store
    with LocalIdP(access_token_lifetime=60) as idp:
        seed(shared_store, idp, key)
        workers = fleet(shared_store.spec, idp.token_url, key=key, lease=lease, deadline=1.0)
        holder = workers.spawn(0, threads=1, pause_at=pause_at)
        workers.send(holder)
        assert read_line(holder, 30) == "paused"
        os.kill(holder.pid, signal.SIGSTOP)
        wait_for(lambda: stopped(holder.pid), 10, "the holder to stop")
        workers.send(holder, "continue")  # read only once it runs again
        wait_for(lambda: not shared_store.is_locked(key), lease + 5, "the lease to expire")
        peer = workers.run(hosts=1, processes=1, threads=1)
        assert idp.counters()["refresh_calls"] == 1
        newer = store.load(key)
        os.kill(holder.pid, signal.SIGCONT)
        outcome = workers.collect(holder, 30)
        counters = idp.counters()
    assert "token" in peer[0]
    assert counters["token_calls"] == 1  # the peer's only: the resumed holder made none
    assert counters["invalid_grant"] == 0
    assert store.load(key).is_same(newer)
    expected = RESUMED[shared_store.kind, pause_at]
    if expected == "adopts":
        assert outcome[0].get("token") == peer[0]["token"], outcome
    else:
        assert outcome[0].get("error") == expected, outcome


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


def test_eight_processes_by_four_threads_make_one_refresh(idp, shared_store, fleet, key):
    """8 real processes x 4 threads on one store: 1 refresh call, 0 invalid_grant."""
    idp.token_latency = 0.3  # widen the race window so the workers really overlap
    store = shared_store.store
    make_source(idp, store, key).login(expired(idp.issue_tokens()))
    idp.reset_counters()
    workers = fleet(shared_store.spec, idp.token_url, wrap=shared_store.wrap, key=key)
    results = workers.run(hosts=1, processes=8, threads=4)
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
