"""Shared stores side by side, measured in one run: file, Redis, PostgreSQL.

1. Lock handoff: one holder process takes a key's lock, saves a refreshed
   token under it and releases it; 8 waiter processes blocked in
   ``TokenSource.refresh(stale)`` adopt that token. ms from the release to
   each waiter's return, p50 / p99, rounds interleaved across the stores.
2. What one refresh costs the backend (one expired token, one process, a
   loopback LocalIdP): Redis round trips counted on the client (and commands
   counted by the server, those inside our Lua scripts included: ``INFO
   commandstats``); PostgreSQL statements and connections counted on the
   connections it opens. Then the hot path: backend operations per request
   while the in-memory token is fresh (1000 requests).
3. A herd: 64 processes on one expired token (LocalIdP, strict rotation):
   token-endpoint calls, ``invalid_grant`` answers, errors, and the wait of
   the followers (every process but the one that refreshed), p50 / p99.

The servers are the test suite's own (tests/helpers/redis_server.py and
tests/helpers/pg_server.py: 127.0.0.1, free ports, temporary directories;
Redis with AOF ``appendfsync always``). Needs the Debian packages
``redis-server`` and ``postgresql`` and the ``redis`` and ``postgres`` extras.
Run: ``python -m bench --only fleet [--quick]``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests_tokenrotate as rt
from bench._common import SPAWN, median, percentile, table
from requests_tokenrotate._storespec import store_from_spec
from requests_tokenrotate.testing import LocalIdP

KEY = "bench"
HELPERS = Path(__file__).resolve().parent.parent / "tests" / "helpers"
STORES = ("file", "redis", "postgres")
WAITERS = 8
HERD = 64
HOT_REQUESTS = 1000


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """A token directory, a redis-server and a PostgreSQL cluster: store specs by name."""
    sys.path.insert(0, str(HELPERS))
    try:
        from pg_server import PostgresServer
        from redis_server import RedisServer
    finally:
        sys.path.remove(str(HELPERS))
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory) / "redis").start()
        postgres = None
        try:
            postgres = PostgresServer()
            postgres.start()
            postgres.setup_roles()
            yield {
                "file": str(Path(directory) / "tokens"),
                "redis": redis.url,
                "postgres": postgres.dsn(),
            }
        finally:
            redis.stop()
            if postgres is not None:
                postgres.close()


# -- 1. the handoff ---------------------------------------------------------------------
def _never(stale: rt.Token | None) -> rt.Token:
    raise AssertionError("a waiter must adopt the holder's token, not refresh")


def _holder(spec: str, go: Any, out: Any) -> None:
    store = store_from_spec(spec)
    with store.lock(KEY, 30) as held:
        held.load()
        go.wait(30)
        time.sleep(0.3)  # let every waiter block on the lock
        now = time.time()
        held.save(rt.Token("fresh", refresh_token="r2", expires_at=now + 3600, obtained_at=now))
    out.put(("release", time.time()))


def _warm(store: rt.TokenStore) -> None:
    # The first lock of a process imports the lock machinery (portalocker, which
    # imports redis-py when it is installed: ~50 ms) and connects: measure the
    # handoff, not that.
    with store.lock(f"{KEY}-warm-{os.getpid()}", 30):
        pass


def _waiter(spec: str, go: Any, out: Any) -> None:
    store = store_from_spec(spec)
    source = rt.TokenSource(_never, store, KEY, lock_timeout=30)
    stale = store.load(KEY)
    _warm(store)
    go.wait(30)
    token = source.refresh(stale)
    out.put(("proceed", time.time(), token.access_token))


def handoff_round(spec: str, waiters: int) -> list[float]:
    store_from_spec(spec).save(
        KEY, rt.Token("stale", refresh_token="r1", expires_at=0, obtained_at=0)
    )
    go, out = SPAWN.Barrier(waiters + 1), SPAWN.Queue()
    procs = [SPAWN.Process(target=_holder, args=(spec, go, out))]
    procs += [SPAWN.Process(target=_waiter, args=(spec, go, out)) for _ in range(waiters)]
    for proc in procs:
        proc.start()
    events = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    release = next(e[1] for e in events if e[0] == "release")
    assert all(e[2] == "fresh" for e in events if e[0] == "proceed")
    return [(e[1] - release) * 1e3 for e in events if e[0] == "proceed"]


# -- 2. backend operations per refresh and per request ------------------------------------
class _CallCounting:
    """A store that counts the gate's calls into it (``store_calls``) and forwards them."""

    def __init__(self, inner: rt.TokenStore, counts: dict[str, int]) -> None:
        self.inner = inner
        self.counts = counts

    def __getattr__(self, name: str) -> Any:
        if name in ("load", "save", "delete", "keys", "lock"):
            self.counts["store_calls"] += 1
        return getattr(self.inner, name)


class Counted:
    """A store's backend, counted: ``ops`` (Redis round trips, PostgreSQL statements),
    ``connections`` opened, and every store call (``store_calls``, for the file store)."""

    def __init__(self, name: str, spec: str) -> None:
        self.name = name
        self.counts = {"ops": 0, "connections": 0, "store_calls": 0}
        if name == "redis":
            import redis

            self.store: rt.TokenStore = rt.RedisTokenStore(spec)
            client = self.store._client
            send = client.execute_command

            def counted(*args: Any, **options: Any) -> Any:
                self.counts["ops"] += 1
                return send(*args, **options)

            client.execute_command = counted
            self._admin = redis.Redis.from_url(spec)
        elif name == "postgres":
            self.store = rt.PostgresTokenStore(connection=self._connector(spec))
        else:
            self.store = store_from_spec(spec)

    def _connector(self, dsn: str) -> Any:
        import psycopg

        counts = self.counts

        class Counting(psycopg.Connection):  # type: ignore[type-arg]
            def execute(self, *args: Any, **kwargs: Any) -> Any:
                counts["ops"] += 1
                return super().execute(*args, **kwargs)

            def commit(self) -> None:
                if self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    counts["ops"] += 1
                super().commit()

            def rollback(self) -> None:
                if self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    counts["ops"] += 1
                super().rollback()

        def connect() -> Any:
            counts["connections"] += 1
            return Counting.connect(dsn, autocommit=True)

        return connect

    def commands(self) -> int:
        """Redis: commands the server ran, inside scripts too, minus our INFO calls."""
        stats = self._admin.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

    def snapshot(self) -> dict[str, int]:
        shot = dict(self.counts)
        if self.name == "redis":
            shot["commands"] = self.commands()
        return shot


def costs(name: str, spec: str) -> dict[str, Any]:
    """Backend operations of one refresh, and per request on the hot path."""
    counted = Counted(name, spec)
    with LocalIdP(access_token_lifetime=600) as idp:
        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
        store = _CallCounting(counted.store, counted.counts)
        source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "costs")
        source.login(rt.Token.from_response(idp.issue_tokens()).replace(expires_at=0.0))
        source.token()  # the first refresh: Redis loads its Lua scripts, PostgreSQL its table
        stale = source.token()
        before = counted.snapshot()
        source.refresh(stale)
        after = counted.snapshot()
        for _ in range(HOT_REQUESTS):
            source.token()
        hot = counted.snapshot()
        client.close()
    return {
        "per_refresh": {k: after[k] - before[k] for k in before},
        "hot_path_per_request": {k: (hot[k] - after[k]) / HOT_REQUESTS for k in hot},
    }


# -- 3. the herd --------------------------------------------------------------------------
class _Leading:
    """A grant that remembers whether this process made the call (its deadline kept)."""

    called = False

    def __init__(self, grant: rt.RefreshTokenGrant) -> None:
        self.grant = grant
        self.deadline = grant.deadline

    def __call__(self, stale: rt.Token | None) -> rt.Token:
        _Leading.called = True
        return self.grant(stale)


def _herd_member(spec: str, token_url: str, go: Any, out: Any) -> None:
    client = rt.OAuthClient(token_url=token_url, client_id="cli")
    grant = _Leading(rt.RefreshTokenGrant(client))
    source = rt.TokenSource(grant, store_from_spec(spec), KEY, lock_timeout=120)
    go.wait(120)
    started = time.time()
    try:
        source.token()
        kind = "ok"
    except Exception as exc:  # reported, never a member that never answers
        kind = type(exc).__name__
    out.put((kind, _Leading.called, started, time.time()))


def herd(spec: str, size: int) -> dict[str, Any]:
    with LocalIdP(access_token_lifetime=600) as idp:
        token = rt.Token.from_response(idp.issue_tokens()).replace(expires_at=0.0)
        store_from_spec(spec).save(KEY, token)
        idp.reset_counters()
        go, out = SPAWN.Barrier(size), SPAWN.Queue()
        procs = [
            SPAWN.Process(target=_herd_member, args=(spec, idp.token_url, go, out))
            for _ in range(size)
        ]
        for proc in procs:
            proc.start()
        events = [out.get(timeout=300) for _ in procs]
        for proc in procs:
            proc.join(30)
        counters = idp.counters()
    waits = [(end - start) * 1e3 for _, led, start, end in events if not led]
    return {
        "size": size,
        "token_calls": counters["token_calls"],
        "invalid_grant": counters["invalid_grant"],
        "errors": sum(kind != "ok" for kind, _, _, _ in events),
        "leaders": sum(led for _, led, _, _ in events),
        "follower_ms": sorted(round(w, 1) for w in waits),
    }


# -- the experiment -----------------------------------------------------------------------
def run(quick: bool) -> dict[str, Any]:
    rounds = 2 if quick else 5
    with servers() as specs:
        samples: dict[str, list[float]] = {name: [] for name in STORES}
        for _ in range(rounds):  # interleaved: file, Redis, PostgreSQL, file, ...
            for name in STORES:
                samples[name] += handoff_round(specs[name], WAITERS)
        spent = {name: costs(name, specs[name]) for name in STORES}
        herds = {name: herd(specs[name], HERD) for name in STORES}
    return {
        "rounds": rounds,
        "waiters": WAITERS,
        "handoff_ms": {name: sorted(round(v, 2) for v in samples[name]) for name in STORES},
        "costs": spent,
        "herd": herds,
    }


def _per_refresh(name: str, spent: dict[str, Any]) -> str:
    refresh = spent["per_refresh"]
    if name == "redis":
        return f"{refresh['ops']} round trips ({refresh['commands']} commands)"
    if name == "postgres":
        return f"{refresh['ops']} statements, {refresh['connections']} connections"
    return "0 (local files)"


def report(result: dict[str, Any]) -> str:
    rows = []
    for name, values in result["handoff_ms"].items():
        spent, flock = result["costs"][name], result["herd"][name]
        hot = max(spent["hot_path_per_request"].values())
        followers = flock["follower_ms"]
        rows.append(
            (
                name,
                f"{median(values):.1f} / {percentile(values, 0.99):.1f}",
                _per_refresh(name, spent),
                f"{hot:g}",
                f"{flock['token_calls']} ({flock['invalid_grant']} invalid_grant, "
                f"{flock['errors']} errors)",
                f"{median(followers):.0f} / {percentile(followers, 0.99):.0f}",
            )
        )
    size = next(iter(result["herd"].values()))["size"]
    return "\n".join(
        [
            f"### Shared stores ({result['waiters']} waiters x {result['rounds']} rounds of "
            f"handoff, interleaved; a herd of {size} processes per store)\n",
            table(
                [
                    "store",
                    "handoff p50 / p99 ms",
                    "backend per refresh",
                    "backend per request (hot path)",
                    f"herd of {size}: token calls",
                    "herd: follower p50 / p99 ms",
                ],
                rows,
                "llllll",
            ),
        ]
    )
