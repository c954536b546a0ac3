"""``python -m requests_tokenrotate demo``: workers against a loopback IdP.

P worker processes x T threads call a protected resource through the adapter
(GETs, POSTs with bytes, POSTs with generator bodies), or with ``client="httpx"``
T tasks on an ``httpx.AsyncClient`` each (:mod:`._demo_httpx`), while 2-second access
tokens expire under them and the IdP rotates its signing key every few
seconds (so the server rejects tokens the clients still believe valid). The
summary checks the invariants: every request succeeded, no refresh token was
spent twice (0 ``invalid_grant``), and the refresh calls at the server track
the token lifetimes that elapsed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Final

import requests

from ._endpoint import OAuthClient
from ._grants import RefreshTokenGrant
from ._source import TokenSource
from ._stores import FileTokenStore
from .exceptions import TokenRotateError

KEY: Final = "demo"
BODY: Final = os.urandom(16 * 1024)
#: The library's DEBUG lines that mark each decision, and what the summary calls them.
_DECISIONS: Final = {
    "before sending a body that cannot be replayed": "proactive refreshes",
    "retrying once": "reactive retries",
    "refresh done": "refresh calls made",
}


class _Tally(logging.Handler):
    """Counts the library's own refresh decisions from its DEBUG records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        for marker, name in _DECISIONS.items():
            if marker in str(record.msg):
                self.counts[name] += 1


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


def _call(session: requests.Session, url: str, kind: str, body: bytes) -> requests.Response:
    if kind == "get":
        return session.get(url, timeout=10)
    return session.post(url, data=body if kind == "bytes" else _chunks(body), timeout=10)


def _worker(idp_url: str, token_url: str, directory: str, threads: int, sync: Any) -> None:
    from ._adapter import mount

    ready, go, until, out = sync
    tally = _Tally()
    package_logger = logging.getLogger("requests_tokenrotate")
    package_logger.addHandler(tally)
    package_logger.setLevel(logging.DEBUG)
    client = OAuthClient(token_url=token_url, client_id="cli")
    source = TokenSource(RefreshTokenGrant(client), FileTokenStore(directory), KEY)
    session = requests.Session()
    mount(session, idp_url + "/", source)
    url = idp_url + "/resource"
    digest = hashlib.sha256(BODY).hexdigest()
    stats: Counter[str] = Counter()
    guard = threading.Lock()

    def run(thread: int) -> None:
        local: Counter[str] = Counter()
        n = thread
        while time.time() < until.value:
            kind = ("get", "bytes", "stream")[n % 3]
            n += 1
            local["requests"] += 1
            try:
                response = _call(session, url, kind, BODY)
                if response.status_code == 401 and kind == "stream":
                    # A consumed stream is returned with its 401 (the token is
                    # already refreshed): the caller retries, as callers do.
                    local["stream 401s retried by the caller"] += 1
                    response.close()
                    response = _call(session, url, kind, BODY)
                with response:
                    if not response.ok:
                        local[f"errors: HTTP {response.status_code}"] += 1
                    elif kind != "get" and response.json().get("sha256") != digest:
                        local["errors: body corrupted"] += 1
                    else:
                        local["2xx"] += 1
            except (TokenRotateError, requests.RequestException) as exc:
                local[f"errors: {type(exc).__name__}"] += 1
        with guard:
            stats.update(local)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    ready.put(os.getpid())
    go.wait(60)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(until.value - time.time() + 30)
    session.close()
    stats.update(tally.counts)
    out.put(dict(stats))


def run_demo(
    *,
    processes: int = 4,
    threads: int = 4,
    duration: float = 10.0,
    lifetime: float = 2.0,
    rotate_every: float = 3.0,
    quiet: bool = False,
    client: str = "requests",
) -> int:
    """Run the demo; returns 0 if every invariant held, else 1.

    :param rotate_every: Seconds between signing-key rotations at the IdP
        (0 disables them); each makes the server reject every live token.
    :param client: ``"requests"`` (threads through the adapter) or ``"httpx"``
        (tasks on an ``httpx.AsyncClient`` through the httpx twin).
    """
    from .testing import LocalIdP

    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    until = ctx.Value("d", 0.0)
    with LocalIdP(access_token_lifetime=lifetime) as idp, tempfile.TemporaryDirectory() as tmp:
        oauth = OAuthClient(token_url=idp.token_url, client_id="cli")
        TokenSource(RefreshTokenGrant(oauth), FileTokenStore(tmp), KEY).login(idp.issue_tokens())
        callers = "threads (requests)" if client == "requests" else "tasks (httpx async)"
        print(
            f"demo: LocalIdP at {idp.url}, {lifetime:g} s access tokens, signing key rotated "
            f"every {rotate_every:g} s; {processes} processes x {threads} {callers} "
            f"for {duration:g} s"
        )
        target: Callable[..., None] = _worker
        if client == "httpx":
            from ._demo_httpx import worker as target
        args = (idp.url, idp.token_url, tmp, threads, (ready, go, until, out))
        procs = [ctx.Process(target=target, args=args) for _ in range(processes)]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=120)
        idp.reset_counters()
        started = time.time()
        until.value = started + duration
        go.set()
        rotations, next_rotation = 0, started + rotate_every
        results: list[dict[str, int]] = []
        while len(results) < processes and time.time() < until.value + 60:
            now = time.time()
            if rotate_every and next_rotation <= now < until.value:
                idp.rotate_signing_key()
                rotations, next_rotation = rotations + 1, next_rotation + rotate_every
            try:
                results.append(out.get(timeout=min(1.0, max(next_rotation - now, 0.01))))
            except queue.Empty:
                if not quiet and now >= started + len(results):
                    c = idp.counters()
                    print(
                        f"  {now - started:5.1f} s  resource calls {c['resource_calls']:6d}  "
                        f"refreshes {c['refresh_calls']:3d}  invalid_grant {c['invalid_grant']}",
                        flush=True,
                    )
        for proc in procs:
            proc.join(30)
        counters = idp.counters()
    return _summary(results, counters, processes, duration, lifetime, rotations)


def _summary(
    results: list[dict[str, int]],
    counters: dict[str, int],
    processes: int,
    duration: float,
    lifetime: float,
    rotations: int,
) -> int:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result)
    errors = sum(value for name, value in total.items() if name.startswith("errors"))
    lifetimes = duration / lifetime
    rows = [
        ("requests", total["requests"]),
        ("2xx", total["2xx"]),
        ("401s absorbed by the reactive retry", total["reactive retries"]),
        (
            "stream 401s (token refreshed, caller retried)",
            total["stream 401s retried by the caller"],
        ),
        ("proactive refreshes before a stream", total["proactive refreshes"]),
        ("refresh calls at the server", counters["refresh_calls"]),
        ("access-token lifetimes elapsed", f"{lifetimes:.1f}"),
        ("signing-key rotations", rotations),
        ("invalid_grant answers", counters["invalid_grant"]),
        ("errors surfaced to callers", errors),
    ]
    print("\nsummary")
    for name, value in rows:
        print(f"  {name:<48} {value}")
    for name, value in sorted(total.items()):
        if name.startswith("errors"):
            print(f"    {name}: {value}")
    # One refresh per token lifetime, a second when streams renew at half the
    # lifetime, one per key rotation, and one to start.
    bound = 2 * math.ceil(lifetimes + 1) + rotations + 1
    broken = [
        why
        for why, bad in (
            ("a worker did not report", len(results) < processes),
            ("errors reached callers", errors > 0),
            ("a refresh token was spent twice (invalid_grant)", counters["invalid_grant"] > 0),
            (f"more than {bound} refresh calls", counters["refresh_calls"] > bound),
            ("no request succeeded", total["2xx"] == 0),
        )
        if bad
    ]
    for why in broken:
        print(f"INVARIANT BROKEN: {why}")
    if not broken:
        print("all invariants held")
    return 1 if broken else 0
