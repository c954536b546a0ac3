"""The shells' own work per request, each beside the static shell it replaces.

``python bench/shells.py [--quick]``. Whole-request figures (``bench/overhead.py``,
``bench/httpx_twin.py``) carry requests' and httpx's own work, which on a shared
machine moves by several µs between runs. Here only the shell is timed, with a
fresh token, beside the static-bearer shell of the same kind, in interleaved
rounds (CPU time of this thread; minimum and paired median over rounds):

* ``TokenRotateAdapter.send`` vs an ``HTTPAdapter`` whose ``send`` sets a fixed
  header, both over a socketless stub (the same ``super().send``);
* ``TokenRotateAuth(r)`` plus its response hook vs a static ``AuthBase``;
* the httpx twin's sync and async flows vs a static ``httpx.Auth``, driven as
  httpx drives them (one request, one 200 answer).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.hooks import dispatch_hook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import requests_tokenrotate as rt
from bench._common import STUB_PREFIX, STUB_URL, StubAdapter, median, table
from bench._peers import StaticBearer

TOKEN = "a" * 400
_SEND = {"stream": False, "timeout": None, "verify": True, "cert": None, "proxies": {}}


def _source() -> rt.TokenSource:
    source = rt.TokenSource(lambda stale: stale, rt.MemoryTokenStore(), "bench")  # type: ignore[arg-type, return-value]
    source.login({"access_token": TOKEN, "refresh_token": "r", "expires_in": 3600})
    return source


class _StaticShell(HTTPAdapter):
    value = "Bearer " + TOKEN

    def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> requests.Response:  # fmt: skip
        request.headers["Authorization"] = self.value
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )


class _StaticStub(_StaticShell, StubAdapter):
    pass


class _OursStub(rt.TokenRotateAdapter, StubAdapter):
    pass


def _adapters() -> dict[str, Callable[[], object]]:
    request = requests.Request("GET", STUB_URL, headers={"Accept": "*/*"}).prepare()

    def through(adapter: HTTPAdapter) -> Callable[[], object]:
        def once() -> object:
            request.headers.pop("Authorization", None)
            return adapter.send(request, **_SEND)

        return once

    return {
        "static adapter": through(_StaticStub()),
        "TokenRotateAdapter": through(_OursStub(_source(), origins=STUB_PREFIX)),
    }


def _auths() -> dict[str, Callable[[], object]]:
    template = requests.Request("GET", STUB_URL, headers={"Accept": "*/*"}).prepare()
    response = StubAdapter().send(template)

    def through(auth: Any) -> Callable[[], object]:
        def once() -> object:
            request = template.copy()
            request.hooks = {"response": []}
            request.headers.pop("Authorization", None)
            response.request = auth(request)
            return dispatch_hook("response", request.hooks, response, **_SEND)

        return once

    return {
        "static AuthBase": through(StaticBearer(TOKEN)),
        "TokenRotateAuth": through(rt.TokenRotateAuth(_source(), origins=STUB_PREFIX)),
    }


def _httpx(mode: str) -> dict[str, Callable[[int], None]] | None:
    try:
        import httpx

        from requests_tokenrotate.httpx import TokenRotateAuth
    except ImportError:
        return None

    class Static(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
            request.headers["Authorization"] = "Bearer " + TOKEN
            yield request

    client = httpx.Client()
    request = client.build_request("GET", "https://api.example.com/v1/things")
    response = httpx.Response(200, request=request)
    loop = asyncio.new_event_loop()

    def through(auth: httpx.Auth) -> Callable[[int], None]:
        def sync(n: int) -> None:
            for _ in range(n):
                request.headers.pop("Authorization", None)
                flow = auth.sync_auth_flow(request)
                next(flow)
                with contextlib.suppress(StopIteration):
                    flow.send(response)

        async def many(n: int) -> None:
            for _ in range(n):
                request.headers.pop("Authorization", None)
                flow = auth.async_auth_flow(request)
                await flow.__anext__()
                with contextlib.suppress(StopAsyncIteration):
                    await flow.asend(response)

        return sync if mode == "sync" else lambda n: loop.run_until_complete(many(n))

    ours = TokenRotateAuth(_source(), origins="https://api.example.com")
    return {f"static httpx.Auth ({mode})": through(Static()), f"httpx twin ({mode})": through(ours)}


def _loop(once: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            once()

    return run


def _rounds(
    runs: dict[str, Callable[[int], None]], rounds: int, per: int
) -> dict[str, list[float]]:
    for run in runs.values():
        run(per // 10)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for index in range(rounds):
        for name in names[index % 2 :] + names[: index % 2]:
            gc.collect()
            gc.disable()
            try:
                started = time.thread_time()
                runs[name](per)
                samples[name].append((time.thread_time() - started) / per * 1e9)
            finally:
                gc.enable()
    return samples


def run(quick: bool) -> dict[str, Any]:
    rounds, per = (9, 2000) if quick else (21, 5000)
    groups: list[dict[str, Callable[[int], None]]] = [
        {name: _loop(once) for name, once in _adapters().items()},
        {name: _loop(once) for name, once in _auths().items()},
    ]
    groups += [g for g in (_httpx("sync"), _httpx("async")) if g is not None]
    rows = []
    for runs in groups:
        samples = _rounds(runs, rounds, per)
        static, ours = list(samples)
        rows.append({
            "shell": ours,
            "reference": static,
            "ours_min_ns": min(samples[ours]),
            "static_min_ns": min(samples[static]),
            "over_min_ns": min(samples[ours]) - min(samples[static]),
            "over_paired_median_ns": median(
                a - b for a, b in zip(samples[ours], samples[static], strict=True)
            ),
        })  # fmt: skip
    return {"rounds": rounds, "per_round": per, "rows": rows}


def report(result: dict[str, Any]) -> str:
    rows = [
        (r["shell"], r["reference"], f"{r['ours_min_ns'] / 1e3:.2f}",
         f"{r['static_min_ns'] / 1e3:.2f}", f"{r['over_min_ns'] / 1e3:+.2f}",
         f"{r['over_paired_median_ns'] / 1e3:+.2f}")
        for r in result["rows"]
    ]  # fmt: skip
    head = (
        f"### The shells alone, with a fresh token (CPU µs per request; {result['rounds']} "
        f"interleaved rounds x {result['per_round']})\n\n"
    )
    return head + table(
        ["shell", "beside", "ours (min)", "static (min)", "over (min)", "over (paired median)"],
        rows,
        "llrrrr",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(report(run(parser.parse_args().quick)))
