"""Example 3: streaming a generator upload (the proactive path).

A generator body cannot be replayed after a 401, so the adapter refreshes the
token *before* sending when it is close to expiry. Here the stored token has
10 s left: the upload goes out with a fresh one, in a single request.

    python examples/streaming_upload.py
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence

import requests
from _local import arguments, setup

import requests_tokenrotate as rt

CHUNK = b"x" * 65536


def chunks(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield CHUNK


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__)
    parser.add_argument("--chunks", type=int, default=64, help="64 KiB chunks to send")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        env = setup(args, stack)
        client = rt.OAuthClient(token_url=env.token_url, client_id=args.client_id)
        source = rt.TokenSource(rt.RefreshTokenGrant(client), env.store, args.key)
        stored = env.store.load(args.key)
        if stored is not None and not args.api:  # make the stored token nearly expire
            source.login(
                rt.Token(
                    stored.access_token,
                    refresh_token=stored.refresh_token,
                    expires_at=time.time() + 10,
                    obtained_at=time.time() - 50,
                )
            )
        before = source.token().access_token
        session = stack.enter_context(requests.Session())
        rt.mount(session, env.api + "/", source)
        response = session.post(env.api + "/resource/upload", data=chunks(args.chunks), timeout=60)
        response.raise_for_status()
        echoed = response.json()
    expected = hashlib.sha256(CHUNK * args.chunks).hexdigest()
    refreshed = source.token().access_token != before
    print(
        f"streaming upload: {echoed.get('length')} bytes, sha256 ok: "
        f"{echoed.get('sha256') == expected}, refreshed before sending: {refreshed}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
