"""Shared stores side by side: FileTokenStore vs RedisTokenStore, in one run.

1. Lock handoff: one holder saves a refreshed token and releases; 8 waiter
   processes blocked in ``TokenSource.refresh(stale)`` adopt it. ms from the
   release to each waiter's return, p50 / p99.
2. Redis commands per refresh (one expired token, one process), and per
   request on the hot path (a fresh token, 1000 requests): from ``INFO
   commandstats``.
3. A herd: 64 processes on one expired token (LocalIdP, strict rotation):
   token-endpoint calls, and the p99 wait of the followers.

Needs ``redis-server`` (Debian package) and redis-py. Run:
``python bench/fleet.py [--rounds 5] [--herd 64]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP

KEY = "bench"


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
               "--save", "", "--appendonly", "yes", "--loglevel", "warning"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(500):  # bounded: 10 s
        try:
            rt.RedisTokenStore(url).keys()
            return process, url
        except rt.TokenStoreError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("redis-server did not start")


def make_store(spec: str) -> rt.TokenStore:
    return rt.RedisTokenStore(spec) if spec.startswith("redis") else rt.FileTokenStore(spec)


def _never(stale: rt.Token | None) -> rt.Token:
    raise AssertionError("a waiter must adopt the holder's token, not refresh")


def _holder(spec: str, go: Any, out: Any) -> None:
    store = make_store(spec)
    with store.lock(KEY, 30) as held:
        go.wait(30)
        time.sleep(0.3)  # let every waiter block on the lock
        held.load()
        now = time.time()
        held.save(rt.Token("fresh", refresh_token="r2", expires_at=now + 3600, obtained_at=now))
        released = time.time()
    out.put(("release", released))


def _waiter(spec: str, go: Any, out: Any) -> None:
    store = make_store(spec)
    source = rt.TokenSource(_never, store, KEY, lock_timeout=30)
    stale = store.load(KEY)
    go.wait(30)
    token = source.refresh(stale)
    out.put(("proceed", time.time(), token.access_token))


def handoff_round(ctx: Any, spec: str, waiters: int) -> list[float]:
    store = make_store(spec)
    store.save(KEY, rt.Token("stale", refresh_token="r1", expires_at=0, obtained_at=0))
    go, out = ctx.Barrier(waiters + 1), ctx.Queue()
    procs = [ctx.Process(target=_holder, args=(spec, go, out))]
    procs += [ctx.Process(target=_waiter, args=(spec, go, out)) for _ in range(waiters)]
    for proc in procs:
        proc.start()
    events = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    release = next(e[1] for e in events if e[0] == "release")
    assert all(e[2] == "fresh" for e in events if e[0] == "proceed")
    return [(e[1] - release) * 1e3 for e in events if e[0] == "proceed"]


def commands(store: rt.RedisTokenStore) -> int:
    """Commands run so far, those inside our Lua scripts included, minus the INFO calls."""
    stats = store._client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def round_trips(store: rt.RedisTokenStore) -> int:
    """Commands clients sent: the scripts (EVALSHA) and plain reads (GET outside scripts)."""
    stats = store._client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def redis_costs(url: str) -> dict[str, float]:
    store = rt.RedisTokenStore(url)
    with LocalIdP(access_token_lifetime=600) as idp:
        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
        token = rt.Token.from_response(idp.issue_tokens()).replace(expires_at=0.0)
        store.save(KEY, token)
        source = rt.TokenSource(rt.RefreshTokenGrant(client), store, KEY)
        source.token()  # the first refresh also loads the Lua scripts (SCRIPT LOAD)
        before, scripts = commands(store), round_trips(store)
        source.refresh(source.token())
        per_refresh = commands(store) - before
        scripts = round_trips(store) - scripts
        before = commands(store)
        for _ in range(1000):
            source.token()
        hot = (commands(store) - before) / 1000
        client.close()
    return {"per_refresh": per_refresh, "scripts_per_refresh": scripts, "hot_path_per_request": hot}


def _herd_member(spec: str, token_url: str, go: Any, out: Any) -> None:
    client = rt.OAuthClient(token_url=token_url, client_id="cli")
    source = rt.TokenSource(rt.RefreshTokenGrant(client), make_store(spec), KEY)
    go.wait(60)
    started = time.time()
    try:
        source.token()
        out.put(("ok", started, time.time()))
    except rt.TokenRotateError as exc:
        out.put((type(exc).__name__, started, time.time()))


def herd(ctx: Any, spec: str, size: int) -> dict[str, Any]:
    with LocalIdP(access_token_lifetime=600) as idp:
        token = rt.Token.from_response(idp.issue_tokens()).replace(expires_at=0.0)
        make_store(spec).save(KEY, token)
        idp.reset_counters()
        go, out = ctx.Barrier(size), ctx.Queue()
        procs = [
            ctx.Process(target=_herd_member, args=(spec, idp.token_url, go, out))
            for _ in range(size)
        ]
        for proc in procs:
            proc.start()
        events = [out.get(timeout=180) for _ in procs]
        for proc in procs:
            proc.join(30)
        counters = idp.counters()
    waits = sorted((end - start) * 1e3 for _, start, end in events)
    return {
        "token_calls": counters["token_calls"],
        "invalid_grant": counters["invalid_grant"],
        "errors": sum(kind != "ok" for kind, _, _ in events),
        "p50_ms": waits[len(waits) // 2],
        "p99_ms": waits[min(len(waits) - 1, round(0.99 * (len(waits) - 1)))],
    }


def run(rounds: int, waiters: int, size: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_redis(directory)
        try:
            specs = {"file": str(Path(directory) / "tokens"), "redis": url}
            samples: dict[str, list[float]] = {name: [] for name in specs}
            for _ in range(rounds):  # interleaved: A B A B ...
                for name, spec in specs.items():
                    samples[name] += handoff_round(ctx, spec, waiters)
            herds = {name: herd(ctx, spec, size) for name, spec in specs.items()}
            costs = redis_costs(url)
        finally:
            process.terminate()
            process.wait(10)
    return {"handoff_ms": samples, "herd": herds, "redis_commands": costs}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--waiters", type=int, default=8)
    parser.add_argument("--herd", type=int, default=64)
    args = parser.parse_args()
    result = run(args.rounds, args.waiters, args.herd)
    print(f"Lock handoff, {args.waiters} waiters x {args.rounds} rounds (ms release -> proceed)")
    print("| store | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in result["handoff_ms"].items():
        print(
            f"| {name} | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} "
            f"| {max(values):.1f} |"
        )
    print(f"\nHerd of {args.herd} processes on one expired token")
    print("| store | token calls | invalid_grant | errors | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, h in result["herd"].items():
        print(
            f"| {name} | {h['token_calls']} | {h['invalid_grant']} | {h['errors']} "
            f"| {h['p50_ms']:.0f} | {h['p99_ms']:.0f} |"
        )
    costs = result["redis_commands"]
    print(
        f"\nRedis: {costs['per_refresh']} commands per refresh (inside "
        f"{costs['scripts_per_refresh']} EVALSHA round trips, plus GETs), "
        f"{costs['hot_path_per_request']:g} per request on the hot path"
    )


if __name__ == "__main__":
    main()
