"""Example 5: configure only the issuer; the token endpoint is discovered lazily.

Discovery runs on the first token-endpoint call (not at start-up, and not at
all while the stored token is good), and is cached on disk for a day.

    python examples/oidc_discovery.py
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import requests
from _local import arguments, setup

import requests_tokenrotate as rt


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__)
    parser.add_argument("--cache-dir", help="discovery cache directory")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        env = setup(args, stack)
        client = rt.OAuthClient(
            issuer=env.issuer, client_id=args.client_id, cache_dir=args.cache_dir
        )
        source = rt.TokenSource(rt.RefreshTokenGrant(client), env.store, args.key)
        session = stack.enter_context(requests.Session())
        rt.mount(session, env.api + "/", source)
        first = session.get(env.api + "/resource/profile", timeout=10).status_code
        source.refresh(source.token())  # a token-endpoint call: discovery happens now
        second = session.get(env.api + "/resource/profile", timeout=10).status_code
    print(f"oidc discovery: token endpoint found from {env.issuer}; statuses {first} {second}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
