"""Example 1: a legacy requests script, made token-rotating by one added line.

    python examples/legacy_script.py                  # against a loopback IdP
    python examples/legacy_script.py --api https://api.example.com \
        --token-url https://idp.example.com/token --client-id cli --dir ~/.tokens
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import requests
from _local import arguments, setup

import requests_tokenrotate as rt


def fetch_report(session: requests.Session, api: str) -> list[int]:
    """The legacy code, unchanged: it knows nothing about tokens."""
    statuses = []
    for _ in range(5):
        response = session.get(f"{api}/resource/report", timeout=10)
        response.raise_for_status()
        statuses.append(response.status_code)
    return statuses


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    with contextlib.ExitStack() as stack:
        env = setup(args, stack)
        client = rt.OAuthClient(token_url=env.token_url, client_id=args.client_id)
        source = rt.TokenSource(rt.RefreshTokenGrant(client), env.store, args.key)

        session = requests.Session()
        rt.mount(session, env.api + "/", source)  # <- the one added line
        statuses = fetch_report(session, env.api)
        session.close()
    print(f"legacy script: {len(statuses)} calls, statuses {sorted(set(statuses))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
