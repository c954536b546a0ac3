"""A child process for the cross-process tests: T threads race one expired token.

It builds a TokenSource on a FileTokenStore, prints ``ready``, waits for a line
on stdin (the parent's barrier), releases its threads together, and prints one
JSON line with what each thread saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import requests_tokenrotate as rt


def make_store(args: argparse.Namespace) -> rt.TokenStore:
    if args.store:
        from requests_tokenrotate._storespec import store_from_spec

        return store_from_spec(args.store)
    return rt.FileTokenStore(args.dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--store", default=None, help="a --store spec instead of --dir")
    parser.add_argument("--key", default="default")
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--client-id", default="cli")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    args = parser.parse_args()

    client = rt.OAuthClient(token_url=args.token_url, client_id=args.client_id)
    source = rt.TokenSource(
        rt.RefreshTokenGrant(client),
        make_store(args),
        args.key,
        lock_timeout=args.lock_timeout,
    )
    barrier = threading.Barrier(args.threads)
    results: list[dict[str, object]] = []
    guard = threading.Lock()

    def run() -> None:
        barrier.wait(timeout=30)
        started = time.time()
        try:
            token = source.token()
            outcome: dict[str, object] = {"token": rt._token.fingerprint(token.access_token)}
        except rt.TokenRotateError as exc:
            outcome = {"error": type(exc).__name__}
        outcome.update(start=started, end=time.time())
        with guard:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's barrier: every process is ready
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
