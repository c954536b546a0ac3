"""Example 2: a vendor SDK built on requests (hvac, the HashiCorp Vault client).

hvac accepts a ``requests.Session``; mount the adapter on it and every SDK call
carries a rotating bearer token (here for a Vault behind an OAuth2 gateway).

    python examples/vendor_sdk.py        # against a loopback IdP's protected API
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import hvac
import requests
from _local import arguments, setup

import requests_tokenrotate as rt


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    with contextlib.ExitStack() as stack:
        env = setup(args, stack)
        client = rt.OAuthClient(token_url=env.token_url, client_id=args.client_id)
        source = rt.TokenSource(rt.RefreshTokenGrant(client), env.store, args.key)
        session = stack.enter_context(requests.Session())
        vault_url = env.api + "/resource"  # the gateway's path to Vault
        rt.mount(session, vault_url, source)

        vault = hvac.Client(url=vault_url, session=session)
        secrets = [vault.read(f"secret/app/{name}") for name in ("db", "queue", "cache")]
    print(f"vendor sdk: hvac read {len(secrets)} secrets through a rotating token")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
