"""Shared stores side by side: lock handoff and round trips per refresh.

Handoff: one holder process takes a key's lock, saves a refreshed token under
it and releases it; 8 waiter processes blocked in ``TokenSource.refresh(stale)``
adopt that token. Reported: ms from the holder's save returning to each
waiter returning (p50 / p99), rounds interleaved across stores. Round trips:
statements a single refresh sends to the store (PostgreSQL: counted on the
connection; the file store makes none), and connections it opens.

Run: ``python bench/stores.py [--rounds 10] [--waiters 8] [--postgres DSN]``.
Without ``--postgres`` it runs a throwaway cluster (tests/helpers/pg_server.py).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec

KEY = "bench"
HERE = Path(__file__).resolve().parent


def _never(stale: rt.Token | None) -> rt.Token:
    raise AssertionError("a waiter must adopt the holder's token, not refresh")


def _holder(spec: str, ready: Any, go: Any, out: Any) -> None:
    store = store_from_spec(spec)
    with store.lock(KEY, 30) as held:
        assert held is not None
        held.load()
        ready.set()
        go.wait(30)
        time.sleep(0.3)  # let every waiter block on the lock
        now = time.time()
        held.save(rt.Token("fresh", refresh_token="r2", expires_at=now + 3600, obtained_at=now))
        out.put(("release", time.time()))


def _waiter(spec: str, barrier: Any, out: Any) -> None:
    store = store_from_spec(spec)
    source = rt.TokenSource(_never, store, KEY, lock_timeout=30)
    stale = store.load(KEY)
    barrier.wait(30)
    token = source.refresh(stale)
    out.put(("proceed", time.time(), token.access_token))


def one_round(ctx: Any, spec: str, waiters: int) -> list[float]:
    store = store_from_spec(spec)
    store.save(KEY, rt.Token("stale", refresh_token="r1", expires_at=0, obtained_at=0))
    ready, out = ctx.Event(), ctx.Queue()
    barrier = ctx.Barrier(waiters + 1)
    procs = [ctx.Process(target=_holder, args=(spec, ready, barrier, out))]
    procs += [ctx.Process(target=_waiter, args=(spec, barrier, out)) for _ in range(waiters)]
    for proc in procs:
        proc.start()
    events = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    release = next(e[1] for e in events if e[0] == "release")
    assert all(e[2] == "fresh" for e in events if e[0] == "proceed")
    return [(e[1] - release) * 1e3 for e in events if e[0] == "proceed"]


def round_trips(dsn: str) -> tuple[int, int]:
    """Statements and connections of one refresh (check 1 read, lock, read, check, save)."""
    import psycopg

    counts = {"statements": 0, "connections": 0}

    class Counting(psycopg.Connection):  # type: ignore[type-arg]
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            counts["statements"] += 1
            return super().execute(*args, **kwargs)

        def commit(self) -> None:
            if self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                counts["statements"] += 1
            super().commit()

        def rollback(self) -> None:
            if self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                counts["statements"] += 1
            super().rollback()

    def connect() -> Any:
        counts["connections"] += 1
        return Counting.connect(dsn, autocommit=True)

    store = rt.PostgresTokenStore(connection=connect)
    now = time.time()
    source = rt.TokenSource(
        lambda stale: rt.Token("new", refresh_token="r", expires_at=now + 60, obtained_at=now),
        store,
        "round-trips",
    )
    source.login(rt.Token("old", refresh_token="r0", expires_at=0, obtained_at=0))
    counts.update(statements=0, connections=0)
    source.token()
    return counts["statements"], counts["connections"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--waiters", type=int, default=8)
    parser.add_argument("--postgres", help="a DSN (default: a throwaway cluster)")
    args = parser.parse_args()
    server = None
    dsn = args.postgres
    if dsn is None:
        sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
        from pg_server import PostgresServer

        server = PostgresServer()
        server.start()
        server.setup_roles()
        dsn = server.dsn()
    ctx = mp.get_context("spawn")
    try:
        with tempfile.TemporaryDirectory() as directory:
            specs = {"FileTokenStore": directory, "PostgresTokenStore": dsn}
            samples: dict[str, list[float]] = {name: [] for name in specs}
            for _ in range(args.rounds):  # interleaved: A B A B ...
                for name, spec in specs.items():
                    samples[name] += one_round(ctx, spec, args.waiters)
            statements, connections = round_trips(dsn)
    finally:
        if server is not None:
            server.close()
    print(
        f"Lock handoff, {args.waiters} waiters x {args.rounds} rounds (ms from save to proceed)\n"
    )
    print("| store | p50 ms | p99 ms | max ms | statements per refresh | connections |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    extra = {"FileTokenStore": ("0 (files)", "0"), "PostgresTokenStore": (statements, connections)}
    for name, values in samples.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} "
            f"| {max(values):.1f} | {extra[name][0]} | {extra[name][1]} |"
        )


if __name__ == "__main__":
    main()
