"""Experiment 1: per-request overhead with a valid token.

(a) Loopback: sequential keep-alive GETs to a LocalIdP that runs in its own
process, through each client and through plain requests with a static header,
in interleaved rounds (the order is rotated every round). Reported: the median
over rounds of the mean time per request, and the ratio to plain requests.

(b) In-process: the same clients with a socketless stub adapter under the
prefix, so only library work is timed; reported as µs per request and the
difference to a static-bearer ``AuthBase``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import requests

from bench import _peers
from bench._common import (
    STUB_URL,
    RemoteIdP,
    fmt,
    has_transport,
    median,
    percentile,
    table,
)
from bench._peers import GOOGLE, OURS, OURS_AUTH, PEERS, STATIC

PLAIN = "plain requests (static header)"


def _our_source(token_url: str, answer: dict[str, Any]) -> Any:
    import requests_tokenrotate as rt

    client = rt.OAuthClient(token_url=token_url, client_id="cli")
    source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "bench")
    source.login(answer)
    return source


def _rounds(
    clients: dict[str, Any],
    url: str,
    rounds: int,
    per_round: int,
    warmup: int,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """µs per request for each client and round; the order rotates every round."""
    names = list(clients)
    for name in names:
        get = clients[name].get
        for _ in range(warmup):
            get(url).close()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            get = clients[name].get
            gc.disable()
            try:
                started = timer()
                for _ in range(per_round):
                    response = get(url)
                    if response.status_code != 200:
                        raise RuntimeError(f"{name}: HTTP {response.status_code}")
                elapsed = timer() - started
            finally:
                gc.enable()
            samples[name].append(elapsed / per_round * 1e6)
    return samples


def loopback(quick: bool) -> dict[str, Any]:
    rounds, per_round = (5, 100) if quick else (15, 200)
    with RemoteIdP(access_token_lifetime=3600) as idp:
        clients: dict[str, requests.Session] = {}
        plain = requests.Session()
        plain.headers["Authorization"] = "Bearer " + idp.issue_tokens()["access_token"]
        clients[PLAIN] = plain
        if has_transport():
            for kind in (OURS, OURS_AUTH):
                source = _our_source(idp.token_url, idp.issue_tokens())
                clients[kind] = _peers.ours_session(kind, source, idp.url + "/")
        for kind in PEERS:
            answer = idp.issue_tokens(_peers.CLIENT_IDS[kind])
            token = _peers.peer_token(answer, time.time())
            clients[kind] = _peers.peer_session(kind, token, idp.token_url)
        before = idp.counters()
        samples = _rounds(clients, idp.resource_url, rounds, per_round, warmup=50)
        after = idp.counters()
        for session in clients.values():
            session.close()
    token_calls = after["token_calls"] - before["token_calls"]
    base = samples[PLAIN]
    rows = {
        name: {
            "median_us": median(values),
            "p25_us": percentile(values, 0.25),
            "p75_us": percentile(values, 0.75),
            # Paired by round, so that drift between rounds cancels out.
            "ratio": median(v / b for v, b in zip(values, base, strict=True)),
            "rounds_us": [round(v, 1) for v in values],
        }
        for name, values in samples.items()
    }
    return {"rounds": rounds, "per_round": per_round, "token_calls": token_calls, "clients": rows}


def in_process(quick: bool) -> dict[str, Any]:
    import requests_tokenrotate as rt

    # Many short rounds, interleaved: on a shared VM the speed drifts by more than
    # the differences measured, and a paired difference over 100 requests sees
    # the same drift on both sides.
    rounds, per_round = (60, 100) if quick else (200, 100)
    now = time.time()
    answer = {"access_token": "a" * 400, "refresh_token": "r", "expires_in": 3600}
    token = _peers.peer_token(answer, now)
    clients: dict[str, requests.Session] = {
        STATIC: _peers.stub_session(STATIC, access_token=token["access_token"])
    }
    if has_transport():
        for kind in (OURS, OURS_AUTH):
            source = rt.TokenSource(lambda stale: stale, rt.MemoryTokenStore(), "bench")
            source.login(answer)
            clients[kind] = _peers.stub_session(kind, source=source)
    for kind in PEERS:
        clients[kind] = _peers.stub_session(kind, token=dict(token))
    # CPU time of this thread, not wall time: on a shared 2-core machine, wall time
    # also counts the time other processes had the core.
    samples = _rounds(clients, STUB_URL, rounds, per_round, warmup=500, timer=time.thread_time)
    base = samples[STATIC]
    rows = {
        name: {
            "median_us": median(values),
            "p25_us": percentile(values, 0.25),
            "p75_us": percentile(values, 0.75),
            # Paired by round, so that drift between rounds cancels out.
            "over_static_us": median(v - b for v, b in zip(values, base, strict=True)),
            "rounds_us": [round(v, 2) for v in values],
        }
        for name, values in samples.items()
    }
    return {"rounds": rounds, "per_round": per_round, "clients": rows}


def run(quick: bool) -> dict[str, Any]:
    return {"in_process": in_process(quick), "loopback": loopback(quick)}


def report(result: dict[str, Any]) -> str:
    inproc, loop = result["in_process"], result["loopback"]
    parts = [
        "### 1. Per-request overhead\n",
        f"(b) In-process, socketless stub adapter: CPU µs per request (thread time), median of "
        f"{inproc['rounds']} interleaved rounds x {inproc['per_round']} requests.\n",
        table(
            ["client", "µs / request", "p25-p75", "over static AuthBase (paired median)"],
            (
                (
                    name,
                    fmt(row["median_us"]),
                    f"{fmt(row['p25_us'])}-{fmt(row['p75_us'])}",
                    "(reference)" if name == STATIC else f"{row['over_static_us']:+.1f} µs",
                )
                for name, row in inproc["clients"].items()
            ),
        ),
        "",
        f"(a) Loopback keep-alive GETs (LocalIdP in its own process; it verifies the JWT on "
        f"every request): µs per request, median of {loop['rounds']} interleaved rounds x "
        f"{loop['per_round']} requests; token calls during the run: {loop['token_calls']}.\n",
        table(
            ["client", "µs / request", "p25-p75", "ratio to plain (paired median)"],
            (
                (
                    name,
                    fmt(row["median_us"], 0),
                    f"{fmt(row['p25_us'], 0)}-{fmt(row['p75_us'], 0)}",
                    f"{row['ratio']:.3f}",
                )
                for name, row in loop["clients"].items()
            ),
        ),
    ]
    if GOOGLE in inproc["clients"]:
        parts.append(
            "\ngoogle-auth's AuthorizedSession.request wraps every call in two TimeoutGuards "
            "and a request_log call (google/auth/transport/requests.py: "
            "AuthorizedSession.request)."
        )
    return "\n".join(parts)
