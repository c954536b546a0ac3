"""Experiment 5: soak.

(a) 4 processes x 4 threads send GETs back to back for a fixed time (60 s for
us, 10 s for each peer; 15 s and 5 s with ``--quick``) with 2 s access tokens
(LocalIdP, strict rotation), sharing tokens as in the storm (``FileTokenStore``
for us; the update callback writing one JSON file, read once at start, for the
peers). Reported: requests done, refresh calls against the
access-token lifetimes that elapsed, 401s handed to callers, ``invalid_grant``
answers and exceptions.

(b) RSS of one process before and after 100 000 requests (20 000 for the
peers; all 20 000 with ``--quick``, peers skipped) through the socketless stub
adapter, after 1 000 warm-up requests. Our source rotates its token throughout
(10 s tokens on a clock stepped 0.1 s per request, a callable grant, a
``FileTokenStore``); the peers keep one valid token.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

from bench import _peers, storm
from bench._common import SPAWN, STUB_URL, StepClock, has_transport, loopback_only, table, temp_dir
from bench._peers import OURS, OURS_AUTH, PEERS, STATIC

PROCS, THREADS, LIFETIME = 4, 4, 2.0
MAX_PER_THREAD = 1_000_000


def worker(kind: str, conf: dict[str, Any], go: Any, out: Any) -> None:
    loopback_only()
    try:
        session = storm._client(kind, conf)
    except Exception as exc:  # reported, not raised
        out.put({"error": repr(exc), "counts": {}})
        return
    counts: dict[str, int] = {}
    guard = threading.Lock()

    def loop(index: int) -> None:
        local: dict[str, int] = {}
        go.wait(60)
        deadline = time.monotonic() + conf["seconds"]
        for _ in range(MAX_PER_THREAD):
            if time.monotonic() >= deadline:
                break
            try:
                response = session.get(conf["resource_url"], timeout=30)
                label = str(response.status_code)
            except Exception as exc:  # what the caller would see
                label = type(exc).__name__
            local[label] = local.get(label, 0) + 1
        with guard:
            for label, n in local.items():
                counts[label] = counts.get(label, 0) + n

    pool = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in pool:
        thread.start()
    out.put({"ready": True})
    for thread in pool:
        thread.join(conf["seconds"] + 120)
    out.put({"counts": counts})


def soak_one(kind: str, seconds: float) -> dict[str, Any]:
    from requests_tokenrotate.testing import LocalIdP

    with temp_dir() as directory, LocalIdP(access_token_lifetime=LIFETIME) as idp:
        client_id = _peers.CLIENT_IDS[kind]
        answer = idp.issue_tokens(client_id)
        now = time.time()
        conf = {
            "token_url": idp.token_url,
            "resource_url": idp.resource_url,
            "prefix": idp.url + "/",
            "dir": directory,
            "file": os.path.join(directory, "token.json"),
            "seconds": seconds,
        }
        if kind == OURS:
            import requests_tokenrotate as rt

            rt.TokenSource(lambda stale: stale, rt.FileTokenStore(directory), storm.KEY).login(
                answer
            )
        else:
            from bench._common import write_json_atomic

            write_json_atomic(conf["file"], _peers.peer_token(answer, now))
        go, out = SPAWN.Event(), SPAWN.Queue()
        workers = [
            SPAWN.Process(target=worker, args=(kind, conf, go, out), daemon=True)
            for _ in range(PROCS)
        ]
        for proc in workers:
            proc.start()
        deadline = time.monotonic() + seconds + 180
        messages = [out.get(timeout=120) for _ in range(PROCS)]
        idp.reset_counters()
        started = time.monotonic()
        go.set()
        while len([m for m in messages if "counts" in m]) < PROCS:
            messages.append(out.get(timeout=max(deadline - time.monotonic(), 0.1)))
        elapsed = time.monotonic() - started
        for proc in workers:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        counters = idp.counters()
    counts: dict[str, int] = {}
    for message in messages:
        for label, n in message.get("counts", {}).items():
            counts[label] = counts.get(label, 0) + n
    done = sum(counts.values())
    return {
        "seconds": seconds,
        "elapsed": elapsed,
        "requests": done,
        "ok": counts.get("200", 0),
        "surfaced_401": counts.get("401", 0),
        "other": {k: v for k, v in counts.items() if k not in ("200", "401")},
        "refresh_calls": counters["refresh_calls"],
        "token_calls": counters["token_calls"],
        "invalid_grant": counters["invalid_grant"],
        "lifetimes_elapsed": seconds / LIFETIME,
        "worker_errors": [m["error"] for m in messages if "error" in m],
    }


# -- (b) memory ----------------------------------------------------------------------
def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_worker(kind: str, count: int, out: Any) -> None:
    loopback_only()
    refreshes = [0]
    with temp_dir() as directory:
        if kind in (OURS, OURS_AUTH):
            import requests_tokenrotate as rt

            clock = StepClock()

            def grant(stale: Any) -> Any:
                refreshes[0] += 1
                now = clock()
                return rt.Token(
                    f"access-{refreshes[0]:08d}" + "a" * 400,
                    refresh_token=f"refresh-{refreshes[0]}",
                    expires_at=now + 10,
                    obtained_at=now,
                )

            source = rt.TokenSource(grant, rt.FileTokenStore(directory), "rss", clock=clock)
            source.login(grant(None))
            refreshes[0] = 0
            session = _peers.stub_session(kind, source=source)
            step = clock.advance
        else:
            token = _peers.peer_token({"access_token": "a" * 400, "expires_in": 86400}, time.time())
            if kind == STATIC:
                session = _peers.stub_session(kind, access_token=token["access_token"])
            else:
                session = _peers.stub_session(kind, token=token)

            def step(seconds: float) -> None:
                pass

        get = session.get
        for _ in range(1000):
            get(STUB_URL)
            step(0.1)
        gc.collect()
        before = _rss_kib()
        started = time.perf_counter()
        half = count // 2
        for _ in range(half):
            get(STUB_URL)
            step(0.1)
        gc.collect()
        middle = _rss_kib()
        for _ in range(count - half):
            get(STUB_URL)
            step(0.1)
        seconds = time.perf_counter() - started
        gc.collect()
        after = _rss_kib()
    out.put(
        {
            "kind": kind,
            "before_kib": before,
            "middle_kib": middle,
            "after_kib": after,
            "refreshes": refreshes[0],
            "seconds": seconds,
        }
    )


def rss(count: int, peer_count: int) -> dict[str, Any]:
    counts = {STATIC: count}
    if has_transport():
        counts.update({OURS: count, OURS_AUTH: count})
    counts.update({kind: peer_count for kind in PEERS if peer_count})
    kinds = list(counts)
    results: dict[str, Any] = {}
    out = SPAWN.Queue()
    for start in range(0, len(kinds), 2):  # two at a time: two cores
        batch = [
            SPAWN.Process(target=rss_worker, args=(kind, counts[kind], out), daemon=True)
            for kind in kinds[start : start + 2]
        ]
        for proc in batch:
            proc.start()
        for _ in batch:
            message = out.get(timeout=600)
            results[message.pop("kind")] = message
        for proc in batch:
            proc.join(10)
    return {"clients": {kind: {"requests": counts[kind], **results[kind]} for kind in kinds}}


def run(quick: bool, seconds: float | None = None) -> dict[str, Any]:
    ours_seconds = seconds or (15.0 if quick else 60.0)
    peer_seconds = min(ours_seconds, 5.0 if quick else 10.0)
    soaks = {}
    if has_transport():
        soaks[OURS] = soak_one(OURS, ours_seconds)
    for kind in PEERS:
        soaks[kind] = soak_one(kind, peer_seconds)
    return {
        "procs": PROCS,
        "threads": THREADS,
        "lifetime": LIFETIME,
        "soak": soaks,
        "rss": rss(20_000, 0) if quick else rss(100_000, 20_000),
        "pending": [] if has_transport() else [OURS],
    }


def report(result: dict[str, Any]) -> str:
    rows = []
    for kind, r in result["soak"].items():
        other = ", ".join(f"{k} x{v}" for k, v in sorted(r["other"].items())) or "0"
        rows.append(
            (
                kind,
                f"{r['seconds']:g}",
                r["requests"],
                f"{r['requests'] / r['elapsed']:.0f}",
                r["refresh_calls"],
                f"{r['lifetimes_elapsed']:g}",
                r["surfaced_401"],
                r["invalid_grant"],
                other,
            )
        )
    rss_rows = []
    for kind, r in result["rss"]["clients"].items():
        rss_rows.append(
            (
                kind,
                f"{r['requests']:,}",
                r["before_kib"],
                r["after_kib"],
                f"{r['middle_kib'] - r['before_kib']:+d} / {r['after_kib'] - r['middle_kib']:+d}",
                r["refreshes"],
                f"{r['seconds'] / r['requests'] * 1e6:.0f}",
            )
        )
    text = [
        f"### 5. Soak: {result['procs']} processes x {result['threads']} threads, "
        f"{result['lifetime']:g} s access tokens, strict rotation\n",
        table(
            [
                "client",
                "seconds",
                "requests",
                "req/s",
                "refresh calls",
                "lifetimes elapsed",
                "401s surfaced",
                "invalid_grant",
                "other failures",
            ],
            rows,
            "lrrrrrrrl",
        ),
        "",
        "RSS of one process through the stub adapter (KiB, after 1 000 warm-up requests; "
        "each client in its own process, two at a time):\n",
        table(
            [
                "client",
                "requests",
                "RSS before",
                "RSS after",
                "growth, 1st / 2nd half",
                "refreshes",
                "µs / request",
            ],
            rss_rows,
        ),
    ]
    text += [
        "",
        "TokenSource reuses a token until min(5 s, 2.5 % of its lifetime) before expiry, "
        "so a 2 s token serves 1.95 s: one refresh call per lifetime elapsed. "
        "The peers read the shared token once at start and do not single-flight "
        "(see the storm), so their refresh tokens die in the first seconds and every later "
        "refresh answers invalid_grant.",
    ]
    if result.get("pending"):
        text.append(f"\nPending (transport not exported yet): {', '.join(result['pending'])}.")
    return "\n".join(text)
