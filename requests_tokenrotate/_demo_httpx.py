"""The demo's httpx mode (``tokenrotate demo --client httpx``): tasks on an AsyncClient.

Each worker process runs T tasks on one event loop, sending through
:class:`requests_tokenrotate.httpx.TokenRotateAuth` the same mix as the
requests workers (GETs, bytes POSTs, async-generator POSTs); the summary and
its invariants are those of :mod:`requests_tokenrotate._demo`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ._demo import BODY, KEY, _Tally
from ._endpoint import OAuthClient
from ._grants import RefreshTokenGrant
from ._source import TokenSource
from ._stores import FileTokenStore
from .exceptions import TokenRotateError
from .httpx import TokenRotateAuth


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


async def _call(client: httpx.AsyncClient, url: str, kind: str) -> httpx.Response:
    if kind == "get":
        return await client.get(url)
    return await client.post(url, content=BODY if kind == "bytes" else _chunks(BODY))


async def _run(idp_url: str, source: TokenSource, tasks: int, until: float) -> Counter[str]:
    url = idp_url + "/resource"
    digest = hashlib.sha256(BODY).hexdigest()
    stats: Counter[str] = Counter()
    auth = TokenRotateAuth(source, origins=idp_url)
    limits = httpx.Limits(max_connections=tasks)
    async with httpx.AsyncClient(auth=auth, timeout=10, limits=limits) as client:

        async def run(task: int) -> None:
            n = task
            while time.time() < until:
                kind = ("get", "bytes", "stream")[n % 3]
                n += 1
                stats["requests"] += 1
                try:
                    response = await _call(client, url, kind)
                    if response.status_code == 401 and kind == "stream":
                        # The consumed stream came back with its 401 (token already
                        # refreshed): the caller retries, as callers do.
                        stats["stream 401s retried by the caller"] += 1
                        response = await _call(client, url, kind)
                    if not response.is_success:
                        stats[f"errors: HTTP {response.status_code}"] += 1
                    elif kind != "get" and response.json().get("sha256") != digest:
                        stats["errors: body corrupted"] += 1
                    else:
                        stats["2xx"] += 1
                except (TokenRotateError, httpx.HTTPError) as exc:
                    stats[f"errors: {type(exc).__name__}"] += 1

        await asyncio.gather(*(run(task) for task in range(tasks)))
    return stats


def worker(idp_url: str, token_url: str, directory: str, tasks: int, sync: Any) -> None:
    """One demo process: ``tasks`` tasks on one event loop until the deadline."""
    ready, go, until, out = sync
    tally = _Tally()
    package_logger = logging.getLogger("requests_tokenrotate")
    package_logger.addHandler(tally)
    package_logger.setLevel(logging.DEBUG)
    client = OAuthClient(token_url=token_url, client_id="cli")
    source = TokenSource(RefreshTokenGrant(client), FileTokenStore(directory), KEY)
    ready.put(os.getpid())
    go.wait(60)
    stats = asyncio.run(_run(idp_url, source, tasks, until.value))
    stats.update(tally.counts)
    out.put(dict(stats))
