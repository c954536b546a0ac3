"""A child process for the cross-process client tests: N callers GET a resource on one key.

Like refresh_worker.py (print ``ready``, wait for the parent's line on stdin,
go, print one JSON line), but each caller sends a real request through a
client shell: ``httpx-async`` (tasks on one event loop), ``httpx-sync`` or
``requests`` (threads on one client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time

import requests_tokenrotate as rt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--key", default="default")
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--resource-url", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--mode", choices=["httpx-async", "httpx-sync", "requests"], required=True)
    parser.add_argument("--callers", type=int, default=4)
    args = parser.parse_args()

    client = rt.OAuthClient(token_url=args.token_url, client_id="cli")
    source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.FileTokenStore(args.dir), args.key)
    results: list[dict[str, object]] = []
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's barrier: every process is ready

    if args.mode == "httpx-async":
        import httpx

        from requests_tokenrotate.httpx import TokenRotateAuth

        async def run_all() -> None:
            auth = TokenRotateAuth(source, origins=[args.origin])
            async with httpx.AsyncClient(auth=auth, timeout=30) as session:

                async def one() -> None:
                    results.append(await call(lambda: session.get(args.resource_url)))

                await asyncio.gather(*(one() for _ in range(args.callers)))

        async def call(send):  # type: ignore[no-untyped-def]
            started = time.time()
            try:
                outcome: dict[str, object] = {"status": (await send()).status_code}
            except rt.TokenRotateError as exc:
                outcome = {"error": type(exc).__name__}
            outcome.update(start=started, end=time.time())
            return outcome

        asyncio.run(run_all())
    else:
        if args.mode == "httpx-sync":
            import httpx

            from requests_tokenrotate.httpx import TokenRotateAuth

            session = httpx.Client(auth=TokenRotateAuth(source, origins=[args.origin]), timeout=30)
        else:
            import requests

            session = requests.Session()
            rt.mount(session, args.origin, source)
        barrier = threading.Barrier(args.callers)
        guard = threading.Lock()

        def run() -> None:
            barrier.wait(timeout=30)
            started = time.time()
            try:
                outcome: dict[str, object] = {
                    "status": session.get(args.resource_url, timeout=30).status_code
                }
            except rt.TokenRotateError as exc:
                outcome = {"error": type(exc).__name__}
            outcome.update(start=started, end=time.time())
            with guard:
                results.append(outcome)

        threads = [threading.Thread(target=run) for _ in range(args.callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        session.close()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
