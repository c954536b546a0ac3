"""Client credentials (RFC 6749 §4.4): a service's own token, cached under a key.

    python examples/client_credentials.py      # against a loopback LocalIdP
    OAUTH_CLIENT_SECRET=... python examples/client_credentials.py \\
        --issuer https://idp.example.com --dir ./tokens --client-id my-service

The secret comes from the environment, never from the command line (where
``ps`` would show it). The token endpoint is discovered from ``--issuer`` on
the first token request (or give ``--token-url``), and the discovery document
is cached on disk. A second run while the token is still good makes no request
to the identity provider at all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence

import requests
from _local import grant_servers

import requests_tokenrotate as rt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--issuer", help="issuer URL (the token endpoint is discovered; default: a loopback IdP)"
    )
    where.add_argument("--token-url", help="token endpoint URL")
    parser.add_argument("--dir", help="token store directory (default: the platformdirs one)")
    parser.add_argument("--client-id", default="confidential")  # LocalIdP's demo client
    parser.add_argument("--key", default="service/api", help="store key of the token")
    parser.add_argument("--scope", default=None)
    parser.add_argument("--audience", default=None)
    parser.add_argument("--resource", default=None, help="a URL to GET with the token")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        local = grant_servers(args, stack)
        return run(args, local)


def run(args: argparse.Namespace, local: bool) -> int:
    secret = os.environ.get("OAUTH_CLIENT_SECRET")
    if not secret and local:
        from requests_tokenrotate.testing import DEFAULT_CLIENTS

        secret = DEFAULT_CLIENTS[args.client_id]  # the loopback IdP's demo client
    if not secret:
        print("error: set OAUTH_CLIENT_SECRET to the client secret", file=sys.stderr)
        return 2
    with rt.OAuthClient(
        args.token_url, args.issuer, client_id=args.client_id, client_secret=secret
    ) as client:
        grant = rt.ClientCredentialsGrant(client, scope=args.scope, audience=args.audience)
        source = rt.TokenSource(grant, rt.FileTokenStore(args.dir), args.key)
        try:
            token = source.token()  # from the store if still good, else one token request
        except rt.TokenRotateError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        now = time.time()
        expires = "never" if token.expires_at is None else f"in {token.expires_at - now:.0f} s"
        age = now - token.obtained_at
        print(f"token for {args.key!r}: obtained {age:.0f} s ago, expires {expires}")
        if args.resource:
            # attaches the token to that origin only, refreshes on a 401
            auth = rt.TokenRotateAuth(source, origins=args.resource)
            with requests.get(args.resource, auth=auth, timeout=10) as response:
                print(f"GET {args.resource} -> {response.status_code}")
                return 0 if response.ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
