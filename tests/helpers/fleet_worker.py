"""The one child process of every cross-process test: one "host"'s process on a store SPEC.

It builds a TokenSource on ``--store`` (a directory, ``redis://…``,
``postgresql://…`` or ``keyring:SERVICE``), prints ``ready``, waits for a line
on stdin (the parent's barrier), then runs ``--threads`` callers together, each
once or in a loop for ``--duration`` seconds, and prints one JSON line: a list
with every call's outcome (``token`` fingerprint or ``error`` type name, plus
``status`` for HTTP calls, ``start`` and ``end``).

``--client``: ``token`` calls ``source.token()``; ``requests`` GETs
``--resource`` through ``rt.mount``; ``httpx-sync`` through an ``httpx.Client``;
``httpx-async`` runs the callers as tasks on one event loop. An HTTP call's
``token`` is the fingerprint of the bearer it actually sent.
``--pause-at lock|load``: after the store's ``lock()`` returns (or after the
held lock's ``load()``), print ``paused`` and wait for a line on stdin: the
parent stops or kills the process exactly there, with no sleeps.
``--deadline``: OAuthClient's deadline, which the gate demands of the lease.
``--lease``: the Redis or PostgreSQL lock's lease.
``--wrap``: use the store through a wrapper that only delegates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import time
from typing import Any

import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec


class Delegating:
    """A store that forwards every call: the gate must see no difference."""

    def __init__(self, inner: rt.TokenStore) -> None:
        self.inner = inner

    def load(self, key):
        return self.inner.load(key)

    def save(self, key, token):
        self.inner.save(key, token)

    def delete(self, key):
        self.inner.delete(key)

    def keys(self):
        return self.inner.keys()

    def lock(self, key, timeout):
        return self.inner.lock(key, timeout)


def pause() -> None:
    print("paused", flush=True)
    sys.stdin.readline()


class PausingHeld:
    def __init__(self, held) -> None:
        self.held = held

    def remaining(self):
        return self.held.remaining()

    def load(self):
        token = self.held.load()
        pause()
        return token

    def save(self, token):
        self.held.save(token)

    def delete(self):
        self.held.delete()


class Pausing(Delegating):
    def __init__(self, inner: rt.TokenStore, at: str) -> None:
        super().__init__(inner)
        self.at = at

    @contextlib.contextmanager
    def lock(self, key, timeout):
        with self.inner.lock(key, timeout) as held:
            if self.at == "lock":
                pause()
                yield held
            else:
                yield PausingHeld(held)


def build_store(args) -> rt.TokenStore:
    lease = {} if args.lease is None else {"lease": args.lease}
    if args.store.startswith(("redis://", "rediss://")):
        store = rt.RedisTokenStore(args.store, timeout=args.redis_timeout, **lease)
    elif args.store.startswith("postgresql://") and lease:
        store = rt.PostgresTokenStore(args.store, **lease)
    else:
        store = store_from_spec(args.store)
    if args.wrap:
        store = Delegating(store)
    if args.pause_at:
        store = Pausing(store, args.pause_at)
    return store


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--key", default="default")
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--client-id", default="cli")
    parser.add_argument("--client", choices=["token", "requests", "httpx-sync", "httpx-async"])
    parser.add_argument("--resource", help="the URL an HTTP client GETs")
    parser.add_argument("--origin", help="where the bearer may go (default: --resource)")
    parser.add_argument("--threads", type=int, default=4, help="callers (tasks for httpx-async)")
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    parser.add_argument("--lease", type=float)
    parser.add_argument("--redis-timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--pause-at", choices=["lock", "load"])
    parser.add_argument("--wrap", action="store_true")
    args = parser.parse_args()
    if args.client is None:
        args.client = "requests" if args.resource else "token"
    if args.client != "token" and not args.resource:
        parser.error(f"--client {args.client} needs --resource")
    args.origin = args.origin or args.resource
    return args


def bearer(request_headers: Any) -> dict[str, object]:
    """The fingerprint of the token a request actually carried."""
    value = request_headers.get("Authorization", "")
    return {"token": rt._token.fingerprint(value.partition(" ")[2])} if value else {}


def main() -> None:
    args = parse_args()
    if os.environ.get("FLEET_WORKER_LOG"):
        logging.basicConfig(
            filename=os.environ["FLEET_WORKER_LOG"],
            level=logging.DEBUG,
            format=f"%(relativeCreated)d {os.getpid()} %(name)s %(message)s",
        )
    deadline = {} if args.deadline is None else {"deadline": args.deadline}
    client = rt.OAuthClient(
        token_url=args.token_url, client_id=args.client_id, timeout=(5, 10), **deadline
    )
    source = rt.TokenSource(
        rt.RefreshTokenGrant(client), build_store(args), args.key, lock_timeout=args.lock_timeout
    )
    results: list[dict[str, object]] = []
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's barrier: every process is ready
    if args.client == "httpx-async":
        asyncio.run(run_tasks(args, source, results))
    else:
        run_threads(args, source, results)
    print(json.dumps(results), flush=True)


def timed(call) -> dict[str, object]:
    started = time.time()
    try:
        outcome = call()
    except rt.TokenRotateError as exc:
        outcome = {"error": type(exc).__name__, "message": str(exc)}
    outcome.update(start=started, end=time.time())
    return outcome


def run_threads(args, source: rt.TokenSource, results: list[dict[str, object]]) -> None:
    if args.client == "token":
        session = None

        def call() -> dict[str, object]:
            return {"token": rt._token.fingerprint(source.token().access_token)}

    else:
        if args.client == "httpx-sync":
            import httpx

            from requests_tokenrotate.httpx import TokenRotateAuth

            auth = TokenRotateAuth(source, origins=[args.origin])
            session = httpx.Client(auth=auth, timeout=30)
        else:
            import requests

            session = requests.Session()
            rt.mount(session, args.origin, source)

        def call() -> dict[str, object]:
            response = session.get(args.resource, timeout=30)
            response.close()
            return {"status": response.status_code, **bearer(response.request.headers)}

    barrier = threading.Barrier(args.threads)
    guard = threading.Lock()

    def run() -> None:
        barrier.wait(timeout=30)
        stop = time.monotonic() + args.duration
        while True:  # bounded by --duration (once when 0)
            outcome = timed(call)
            with guard:
                results.append(outcome)
            if time.monotonic() >= stop:
                break
            time.sleep(args.interval)

    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.duration + 120)
    if session is not None:
        session.close()


async def run_tasks(args, source: rt.TokenSource, results: list[dict[str, object]]) -> None:
    import httpx

    from requests_tokenrotate.httpx import TokenRotateAuth

    auth = TokenRotateAuth(source, origins=[args.origin])
    async with httpx.AsyncClient(auth=auth, timeout=30) as session:

        async def one() -> None:
            stop = time.monotonic() + args.duration
            while True:  # bounded by --duration (once when 0)
                started = time.time()
                try:
                    response = await session.get(args.resource)
                    outcome = {"status": response.status_code, **bearer(response.request.headers)}
                except rt.TokenRotateError as exc:
                    outcome = {"error": type(exc).__name__, "message": str(exc)}
                outcome.update(start=started, end=time.time())
                results.append(outcome)
                if time.monotonic() >= stop:
                    break
                await asyncio.sleep(args.interval)

        await asyncio.gather(*(one() for _ in range(args.threads)))


if __name__ == "__main__":
    main()
