"""Lock handoff: how soon do waiting processes proceed after the holder releases?

One holder process takes a key's lock, writes a refreshed token and releases
it; 8 waiter processes blocked in ``TokenSource.refresh(stale)`` adopt that
token. Reported: the time from the holder's release to each waiter returning,
p50 / p99, for our poll interval and for portalocker's default (0.25 s), in
one run. Run: ``python bench/handoff.py [--rounds 10] [--waiters 8]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from typing import Any

import requests_tokenrotate as rt
from requests_tokenrotate import _stores

KEY = "bench"


def _never(stale: rt.Token | None) -> rt.Token:
    raise AssertionError("a waiter must adopt the holder's token, not refresh")


def _holder(directory: str, interval: float, ready: Any, go: Any, out: Any) -> None:
    _stores.LOCK_CHECK_INTERVAL = interval  # type: ignore[misc]
    store = rt.FileTokenStore(directory)
    with store.lock(KEY, 30):
        ready.set()
        go.wait(30)
        time.sleep(0.3)  # let every waiter block on the lock file
        now = time.time()
        store.save(
            KEY, rt.Token("fresh", refresh_token="r2", expires_at=now + 3600, obtained_at=now)
        )
    out.put(("release", time.time()))


def _waiter(directory: str, interval: float, barrier: Any, out: Any) -> None:
    _stores.LOCK_CHECK_INTERVAL = interval  # type: ignore[misc]
    store = rt.FileTokenStore(directory)
    source = rt.TokenSource(_never, store, KEY, lock_timeout=30)
    stale = store.load(KEY)
    # The first lock of a process imports portalocker (and redis-py with it when
    # installed, ~50 ms): measure the handoff, not that import.
    with store.lock(f"{KEY}-warm-{os.getpid()}", 30):
        pass
    barrier.wait(30)
    token = source.refresh(stale)
    out.put(("proceed", time.time(), token.access_token))


def one_round(ctx: Any, interval: float, waiters: int) -> list[float]:
    with tempfile.TemporaryDirectory() as directory:
        store = rt.FileTokenStore(directory)
        store.save(KEY, rt.Token("stale", refresh_token="r1", expires_at=0, obtained_at=0))
        ready, out = ctx.Event(), ctx.Queue()
        barrier = ctx.Barrier(waiters + 1)
        procs = [ctx.Process(target=_holder, args=(directory, interval, ready, barrier, out))]
        procs += [
            ctx.Process(target=_waiter, args=(directory, interval, barrier, out))
            for _ in range(waiters)
        ]
        for proc in procs:
            proc.start()
        events = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
    release = next(e[1] for e in events if e[0] == "release")
    assert all(e[2] == "fresh" for e in events if e[0] == "proceed")
    return [(e[1] - release) * 1e3 for e in events if e[0] == "proceed"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--waiters", type=int, default=8)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    intervals = {
        "requests-tokenrotate (5 ms poll)": _stores.LOCK_CHECK_INTERVAL,
        "portalocker default (250 ms poll)": 0.25,
    }
    samples: dict[str, list[float]] = {name: [] for name in intervals}
    for _ in range(args.rounds):  # interleaved: A B A B ...
        for name, interval in intervals.items():
            samples[name] += one_round(ctx, interval, args.waiters)
    print(
        f"Lock handoff, {args.waiters} waiters x {args.rounds} rounds"
        " (ms from release to proceed)\n"
    )
    print("| poll interval | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in samples.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} "
            f"| {max(values):.1f} |"
        )
    print()
    print(
        json.dumps({name: sorted(round(v, 2) for v in values) for name, values in samples.items()})
    )


if __name__ == "__main__":
    main()
