"""Example: an ``httpx.AsyncClient`` with the httpx twin, many tasks on one token.

``requests_tokenrotate.httpx.TokenRotateAuth`` is an ``httpx.Auth``: pass it to
``httpx.AsyncClient(auth=...)`` (or ``httpx.Client``), or to any SDK built on
httpx that accepts one. Tasks that meet an expired token share one refresh,
which runs off the event loop; processes on the same store share it too.

    python examples/httpx_async.py       # against a loopback IdP's protected API
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import httpx
from _local import arguments, setup

import requests_tokenrotate as rt
from requests_tokenrotate.httpx import TokenRotateAuth


async def fetch_all(api: str, auth: TokenRotateAuth, tasks: int) -> list[int]:
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        answers = await asyncio.gather(*(client.get(api + "/resource") for _ in range(tasks)))
    return sorted({answer.status_code for answer in answers})


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__)
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        env = setup(args, stack)
        client = rt.OAuthClient(token_url=env.token_url, client_id=args.client_id)
        source = rt.TokenSource(rt.RefreshTokenGrant(client), env.store, args.key)
        auth = TokenRotateAuth(source, origins=[env.api])  # the token goes nowhere else
        statuses = asyncio.run(fetch_all(env.api, auth, args.tasks))
    print(f"httpx async: {args.tasks} tasks, statuses {statuses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
