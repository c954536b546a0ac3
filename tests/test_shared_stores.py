"""The shared-store suite: the same fleet behaviours for every store that spans processes.

"Hosts" are process groups with their own HOME and token directory; they share
only the store (a token directory for the file store, a database for
PostgreSQL) and the IdP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec
from requests_tokenrotate.testing import LocalIdP

LIFETIME = 2.0


class Shared:
    """A store as the fleet names it (``spec``) and as the test uses it (``store``)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.store = store_from_spec(spec)


@pytest.fixture(params=["file", "postgres"])
def shared_store(request, tmp_path):
    if request.param == "file":
        return Shared(str(tmp_path / "shared-tokens"))
    server = request.getfixturevalue("postgres_server")
    return Shared(server.dsn())


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
        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2), deadline=4)
        # Well inside PostgreSQL's lease (45 s): the server released it with the session.
        source = rt.TokenSource(rt.RefreshTokenGrant(client), shared_store.store, key,
                                lock_timeout=5)  # fmt: skip
        assert source.token().access_token
        assert idp.refresh_calls == 1
        assert idp.invalid_grant == 0
