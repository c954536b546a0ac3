"""A child process for the shared-store tests: one "host"'s process on any store.

It builds a TokenSource on ``--store`` (a directory or a URL), prints
``ready``, waits for a line on stdin (the parent's barrier), then its threads
either race once for the token (``--duration 0``) or keep asking for it until
the duration has passed. It prints one JSON line: successes, error type names,
and the fingerprints of the tokens it was given.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter

import requests_tokenrotate as rt
from requests_tokenrotate._storespec import store_from_spec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--key", default="default")
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between calls")
    parser.add_argument("--lock-timeout", type=float, default=20.0)
    args = parser.parse_args()

    client = rt.OAuthClient(
        token_url=args.token_url, client_id="cli", timeout=(5, 10), deadline=15
    )
    source = rt.TokenSource(
        rt.RefreshTokenGrant(client),
        store_from_spec(args.store),
        args.key,
        lock_timeout=args.lock_timeout,
    )
    barrier = threading.Barrier(args.threads)
    guard = threading.Lock()
    ok = 0
    errors: Counter[str] = Counter()
    tokens: set[str] = set()

    def once() -> None:
        nonlocal ok
        try:
            token = source.token()
        except rt.TokenRotateError as exc:
            with guard:
                errors[type(exc).__name__] += 1
            return
        with guard:
            ok += 1
            tokens.add(rt._token.fingerprint(token.access_token))

    def run() -> None:
        barrier.wait(timeout=30)
        if args.duration <= 0:
            once()
            return
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            once()
            time.sleep(args.pause)

    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's barrier: every process is ready
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.duration + 90)
    print(json.dumps({"ok": ok, "errors": dict(errors), "tokens": sorted(tokens)}), flush=True)


if __name__ == "__main__":
    main()
