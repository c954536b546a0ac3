"""Example 7: parallel worker processes sharing one profile: one refresh for all.

Workers (here a ``multiprocessing`` pool; ``xargs -P`` or cron jobs work the
same) each build their own session on the same token directory. When the
token expires, exactly one of them calls the token endpoint; the others wait
on the key's lock file and adopt the new token.

    python examples/parallel_workers.py
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Sequence

import requests
from _local import arguments, setup

import requests_tokenrotate as rt


def work(job: tuple[str, str, str, str, str]) -> int:
    api, token_url, client_id, directory, key = job
    client = rt.OAuthClient(token_url=token_url, client_id=client_id)
    source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.FileTokenStore(directory), key)
    with requests.Session() as session:
        rt.mount(session, api + "/", source)
        return session.get(f"{api}/resource/jobs", timeout=30).status_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        env = setup(args, stack)
        stored = env.store.load(args.key)
        if stored is not None and not args.api:  # expire it: the workers race one refresh
            rt.TokenSource(lambda s: s, env.store, args.key).login(
                rt.Token(
                    stored.access_token,
                    refresh_token=stored.refresh_token,
                    expires_at=time.time() - 1,
                    obtained_at=time.time() - 61,
                )
            )
        job = (env.api, str(env.token_url), args.client_id, str(env.store.directory), args.key)
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            statuses = pool.map(work, [job] * args.workers)
    print(f"parallel workers: {len(statuses)} workers, statuses {sorted(set(statuses))}")
    return 0 if set(statuses) == {200} else 1


if __name__ == "__main__":
    raise SystemExit(main())
