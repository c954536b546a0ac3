"""The httpx twin: per-request library CPU, and event-loop lag during a refresh.

``python bench/httpx_twin.py [--quick]``, everything in one run, side by side:

(a) In-process (``httpx.MockTransport``, no sockets): µs per request through
``httpx.Client`` and ``httpx.AsyncClient`` with a static-bearer ``httpx.Auth``
and with :class:`requests_tokenrotate.httpx.TokenRotateAuth` (token fresh),
interleaved rounds; the paired median of the difference.

(b) Loop lag: 64 tasks on an expired token while the refresh waits 0.3 s for a
slow token endpoint (a loopback LocalIdP); a heartbeat task sleeps 1 ms in a
loop and records how late it wakes. Side by side: the twin, and the same
source driven from a plain ``httpx.Auth.auth_flow`` that calls
``TokenSource.token()`` on the loop (what a naive async wrapper does).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests_tokenrotate as rt
from bench._common import table
from requests_tokenrotate.httpx import TokenRotateAuth
from requests_tokenrotate.testing import LocalIdP

URL = "https://api.example.com/v1/things"


class StaticBearer(httpx.Auth):
    """The reference: a fixed header, nothing else."""

    def __init__(self, token: str) -> None:
        self.value = "Bearer " + token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = self.value
        yield request


class BlockingAuth(httpx.Auth):
    """A naive wrapper: the blocking TokenSource called on the event loop."""

    def __init__(self, source: rt.TokenSource) -> None:
        self.source = source

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = "Bearer " + self.source.token().access_token
        yield request


def _fresh_source() -> rt.TokenSource:
    now = time.time()
    source = rt.TokenSource(lambda stale: stale, rt.MemoryTokenStore(), "bench")  # type: ignore[arg-type, return-value]
    source.login(rt.Token("tok-1", expires_at=now + 3600, obtained_at=now))
    return source


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


def cpu(rounds: int, per_round: int) -> list[tuple[str, float, float]]:
    auths: dict[str, httpx.Auth] = {
        "static httpx.Auth": StaticBearer("tok-1"),
        "requests-tokenrotate httpx": TokenRotateAuth(
            _fresh_source(), origins="https://api.example.com"
        ),
    }
    rows = []
    for mode in ("sync", "async"):
        samples: dict[str, list[float]] = {name: [] for name in auths}
        clients = {
            name: (
                httpx.Client(auth=auth, transport=httpx.MockTransport(_ok))
                if mode == "sync"
                else httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(_ok))
            )
            for name, auth in auths.items()
        }

        async def run_async(client: Any, n: int) -> None:
            for _ in range(n):
                await client.get(URL)

        loop = asyncio.new_event_loop()
        for client in clients.values():  # warm up: first-request work is not per-request cost
            if mode == "sync":
                for _ in range(200):
                    client.get(URL)
            else:
                loop.run_until_complete(run_async(client, 200))
        for r in range(rounds):
            order = list(clients) if r % 2 == 0 else list(reversed(clients))
            for name in order:
                client = clients[name]
                gc.disable()
                started = time.thread_time()  # CPU time of this thread (a shared machine)
                if mode == "sync":
                    for _ in range(per_round):
                        client.get(URL)
                else:
                    loop.run_until_complete(run_async(client, per_round))
                samples[name].append((time.thread_time() - started) / per_round * 1e6)
                gc.enable()
        for client in clients.values():
            if mode == "sync":
                client.close()
            else:
                loop.run_until_complete(client.aclose())
        loop.close()
        static = samples["static httpx.Auth"]
        for name in auths:
            diffs = [a - b for a, b in zip(samples[name], static, strict=True)]
            rows.append(
                (f"{name} ({mode})", statistics.median(samples[name]), statistics.median(diffs))
            )
    return rows


def lag(tasks: int = 64, latency: float = 0.3) -> list[tuple[str, float, float, float, float]]:
    rows = []
    for name in ("requests-tokenrotate httpx", "blocking auth_flow (naive)"):
        with LocalIdP(token_latency=latency) as idp, tempfile.TemporaryDirectory() as tmp:
            store = rt.FileTokenStore(tmp)
            token = rt.Token.from_response(idp.issue_tokens(), now=time.time())
            store.save("k", token.replace(expires_at=time.time() - 1))
            client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
            source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "k")
            auth: httpx.Auth = (
                TokenRotateAuth(source, origins=idp.url)
                if name.startswith("requests")
                else BlockingAuth(source)
            )

            async def main(auth: httpx.Auth) -> tuple[list[float], float]:
                gaps: list[float] = []
                done = asyncio.Event()

                async def heartbeat() -> None:
                    while not done.is_set():
                        before = time.perf_counter()
                        await asyncio.sleep(0.001)
                        gaps.append((time.perf_counter() - before - 0.001) * 1e3)

                beat = asyncio.create_task(heartbeat())
                await asyncio.sleep(0.01)
                started = time.perf_counter()
                async with httpx.AsyncClient(auth=auth, timeout=30) as http:
                    await asyncio.gather(*(http.get(idp.resource_url) for _ in range(tasks)))
                elapsed = time.perf_counter() - started
                done.set()
                await beat
                return gaps, elapsed

            gaps, elapsed = asyncio.run(main(auth))
            gaps.sort()
            p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
            rows.append((name, statistics.median(gaps), p99, gaps[-1], elapsed * 1e3))
    return rows


def run(quick: bool) -> dict[str, Any]:
    # Many short interleaved rounds: the paired difference sees the same drift on both sides.
    rounds, per_round = (60, 100) if quick else (200, 100)
    return {
        "rounds": rounds,
        "per_round": per_round,
        "cpu": [
            {"client": name, "us": round(us, 2), "over_static_us": round(diff, 2)}
            for name, us, diff in cpu(rounds, per_round)
        ],
        "lag": [
            {"auth": name, "p50_ms": p50, "p99_ms": p99, "max_ms": worst, "wall_ms": wall}
            for name, p50, p99, worst, wall in lag()
        ],
    }


def report(result: dict[str, Any]) -> str:
    text = [
        f"### httpx twin: CPU per request (median of {result['rounds']} interleaved rounds x "
        f"{result['per_round']}, httpx.MockTransport) and loop lag during a refresh\n",
        table(
            ["client", "µs / request", "over static httpx.Auth (paired median)"],
            [
                (r["client"], f"{r['us']:.1f}", f"{r['over_static_us']:+.1f} µs")
                for r in result["cpu"]
            ],
        ),
        "",
        table(
            ["auth, 64 tasks, 0.3 s token endpoint", "lag p50 ms", "p99 ms", "max ms", "wall ms"],
            [
                (
                    r["auth"],
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    f"{r['max_ms']:.1f}",
                    f"{r['wall_ms']:.0f}",
                )
                for r in result["lag"]
            ],
        ),
    ]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(report(run(args.quick)))


if __name__ == "__main__":
    main()
