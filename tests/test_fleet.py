"""Fleets on one RedisTokenStore: hosts are process groups sharing only Redis and the IdP."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers.fleet import Fleet, read_line

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP

TYPED_OUTAGE = {"TokenStoreError", "LockTimeout", "LockLost"}


def seed(idp: LocalIdP, store: rt.TokenStore, *, expired: bool = True) -> rt.Token:
    token = rt.Token.from_response(idp.issue_tokens())
    if expired:
        token = token.replace(expires_at=time.time() - 1)
    store.save("default", token)
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


def test_two_hosts_by_four_processes_by_four_threads_make_one_refresh(redis_url, tmp_path):
    """32 callers on 2 hosts, one expired token, strict rotation: 1 refresh, 0 invalid_grant, all 200."""
    with LocalIdP(access_token_lifetime=60) as idp:
        idp.token_latency = 0.3  # widen the race window so the hosts really overlap
        seed(idp, rt.RedisTokenStore(redis_url))
        with Fleet(tmp_path, redis_url, idp.token_url, resource=idp.resource_url) as fleet:
            results = fleet.run(hosts=2, processes=4, threads=4)
        counters = idp.counters()
    assert len(results) == 32
    assert [r for r in results if r.get("status") != 200] == []
    assert counters["refresh_calls"] == 1
    assert counters["token_calls"] == 1
    assert counters["invalid_grant"] == 0
    first_end = min(r["end"] for r in results)
    assert sum(r["start"] < first_end for r in results) >= 16  # the race was real


def test_twenty_expiry_windows_cost_one_refresh_each(redis_url, tmp_path):
    """2 s tokens for ~40 s across 2 hosts x 2 processes x 2 threads: refreshes = lifetimes."""
    lifetime, windows = 2.0, 20
    with LocalIdP(access_token_lifetime=lifetime) as idp:
        store = rt.RedisTokenStore(redis_url)
        seed(idp, store)
        with Fleet(tmp_path, redis_url, idp.token_url, resource=idp.resource_url) as fleet:
            children = [
                fleet.spawn(h, threads=2, duration=lifetime * windows, interval=0.2)
                for h in (0, 0, 1, 1)
            ]
            for child in children:
                fleet.send(child)
            results = [r for child in children for r in fleet.collect(child)]
        counters = idp.counters()
    assert [r for r in results if r.get("status") != 200] == []
    assert counters["invalid_grant"] == 0
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    lifetimes = elapsed / lifetime
    assert lifetimes >= windows
    assert abs(counters["refresh_calls"] - lifetimes) <= 1, (counters, elapsed)


def test_holder_killed_mid_refresh_frees_the_key_after_its_lease(redis_url, tmp_path):
    """SIGKILL inside the token call: the others proceed once the lease ends; the store is whole."""
    lease = 3.0
    with LocalIdP(access_token_lifetime=60) as idp:
        store = rt.RedisTokenStore(redis_url)
        before = seed(idp, store)
        idp.hang_seconds = 60
        idp.fail_next(1, "hang")  # the holder's call is held by the server, never processed
        with Fleet(tmp_path, redis_url, idp.token_url, lease=lease, deadline=1.0) as fleet:
            holder = fleet.spawn(0, threads=1)
            fleet.send(holder)
            wait_for(lambda: idp.token_calls == 1, 10, "the holder's token call")
            assert store._client.pttl(store.lock_key("default")) > 0
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            started = time.monotonic()
            results = fleet.run(hosts=2, processes=2, threads=2)
            waited = time.monotonic() - started
        counters = idp.counters()
    assert {r.get("error") for r in results} == {None}
    assert len({r["token"] for r in results}) == 1
    assert counters["refresh_calls"] == 1
    assert counters["invalid_grant"] == 0
    assert waited < lease + 10
    after = store.load("default")  # whole: decodes, and is the refresh the others made
    assert after is not None
    assert not after.is_same(before)
    assert after.refresh_token != before.refresh_token


@pytest.mark.parametrize("pause_at", ["lock", "load"])
def test_holder_stopped_past_its_lease_makes_no_call_and_overwrites_nothing(
    redis_url, tmp_path, pause_at
):
    """SIGSTOP after lock() (or after the locked read) until a peer refreshes; SIGCONT: no call."""
    lease = 2.0
    with LocalIdP(access_token_lifetime=60) as idp:
        store = rt.RedisTokenStore(redis_url)
        seed(idp, store)
        with Fleet(tmp_path, redis_url, idp.token_url, lease=lease, deadline=1.0) as fleet:
            holder = fleet.spawn(0, threads=1, pause_at=pause_at)
            fleet.send(holder)
            assert read_line(holder, 30) == "paused"
            os.kill(holder.pid, signal.SIGSTOP)
            wait_for(lambda: stopped(holder.pid), 10, "the holder to stop")
            fleet.send(holder, "continue")  # read only once it runs again
            lock = store.lock_key("default")
            wait_for(lambda: not store._client.exists(lock), lease + 5, "the lease to expire")
            peer = fleet.run(hosts=1, processes=1, threads=1)
            assert idp.counters()["refresh_calls"] == 1
            newer = store.load("default")
            os.kill(holder.pid, signal.SIGCONT)
            outcome = fleet.collect(holder, 30)
        counters = idp.counters()
    assert "token" in peer[0]
    assert counters["token_calls"] == 1  # the peer's only: the resumed holder made none
    assert counters["invalid_grant"] == 0
    assert store.load("default").is_same(newer)
    # After the locked read it must give up (LockLost); after lock() alone it reads and adopts.
    expected = {"lock": {"token": peer[0]["token"]}, "load": {"error": "LockLost"}}[pause_at]
    assert {k: outcome[0].get(k) for k in expected} == expected, outcome


def test_redis_restart_mid_run_only_typed_errors_and_the_credential_survives(
    redis_server, tmp_path
):
    """Redis stopped and restarted (AOF) under a running fleet: typed errors, 0 invalid_grant."""
    with redis_server.client() as client:
        client.flushall()
    url = redis_server.url
    with LocalIdP(access_token_lifetime=1.0) as idp:
        store = rt.RedisTokenStore(url, lease=30)
        seed(idp, store)
        options = {"resource": idp.resource_url, "lock_timeout": 3, "redis_timeout": 1.0}
        options["deadline"] = 2.0  # below lock_timeout, as TokenSource demands
        with Fleet(tmp_path, url, idp.token_url, **options) as fleet:
            children = [fleet.spawn(h, threads=2, duration=9, interval=0.1) for h in (0, 1)]
            for child in children:
                fleet.send(child)
            wait_for(lambda: idp.refresh_calls >= 2, 10, "refreshes before the outage")
            # Hold the key's lock so nothing refreshes across the restart: what was stored
            # before must be what is stored after.
            with store.lock("default", 10) as held:
                before = held.load()
                redis_server.stop()
                time.sleep(3)  # the outage's length, not a synchronisation
                redis_server.start()
                after = held.load()
                assert held.remaining() > 0  # the lease itself survived (AOF)
            results = [r for child in children for r in fleet.collect(child)]
        counters = idp.counters()
    assert after.is_same(before)
    assert after.refresh_token == before.refresh_token
    errors = {r["error"] for r in results if "error" in r}
    assert errors
    assert errors <= TYPED_OUTAGE
    assert {r.get("status") for r in results if "error" not in r} == {200}
    assert counters["invalid_grant"] == 0
    last = max(results, key=lambda r: r["start"])
    assert last.get("status") == 200  # the fleet works again after the restart
