"""A child process for the shared-store tests: one "host"'s process on a store SPEC.

It builds a TokenSource on ``--store`` (a directory or a redis:// URL), prints
``ready``, waits for a line on stdin (the parent's barrier), then runs
``--threads`` threads that each call ``source.token()`` (or GET ``--resource``
through ``rt.mount``) once, or in a loop for ``--duration`` seconds, and prints
one JSON line with every outcome.

``--pause-at lock|load``: after the store's ``lock()`` returns (or after the
held lock's ``load()``), print ``paused`` and wait for a line on stdin: the
parent stops or kills the process exactly there, with no sleeps.
``--deadline``: OAuthClient's deadline, which the gate demands of the lease.
``--wrap``: use the store through a wrapper that only delegates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time

import requests

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
    if args.store.startswith(("redis://", "rediss://")):
        store = rt.RedisTokenStore(args.store, lease=args.lease, timeout=args.redis_timeout)
    else:
        store = store_from_spec(args.store)
    if args.wrap:
        store = Delegating(store)
    if args.pause_at:
        store = Pausing(store, args.pause_at)
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--key", default="default")
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--client-id", default="cli")
    parser.add_argument("--resource")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    parser.add_argument("--lease", type=float, default=45.0)
    parser.add_argument("--redis-timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--pause-at", choices=["lock", "load"])
    parser.add_argument("--wrap", action="store_true")
    args = parser.parse_args()
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
        rt.RefreshTokenGrant(client),
        build_store(args),
        args.key,
        lock_timeout=args.lock_timeout,
    )
    barrier = threading.Barrier(args.threads)
    results: list[dict[str, object]] = []
    guard = threading.Lock()

    def once(session: requests.Session | None) -> dict[str, object]:
        started = time.time()
        try:
            if session is not None:
                with session.get(args.resource, timeout=10) as response:
                    outcome: dict[str, object] = {"status": response.status_code}
            else:
                token = source.token()
                outcome = {"token": rt._token.fingerprint(token.access_token)}
        except rt.TokenRotateError as exc:
            outcome = {"error": type(exc).__name__, "message": str(exc)}
        outcome.update(start=started, end=time.time())
        return outcome

    def run() -> None:
        session = None
        if args.resource:
            session = requests.Session()
            rt.mount(session, args.resource, source)
        barrier.wait(timeout=30)
        stop = time.monotonic() + args.duration
        while True:  # bounded by --duration (once when 0)
            outcome = once(session)
            with guard:
                results.append(outcome)
            if time.monotonic() >= stop:
                break
            time.sleep(args.interval)

    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's barrier: every process is ready
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.duration + 120)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
