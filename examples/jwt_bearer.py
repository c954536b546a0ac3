"""JWT bearer (RFC 7523): trade the user's login for a narrower, per-stack token.

    python examples/jwt_bearer.py      # against a loopback LocalIdP, user logged in
    python examples/jwt_bearer.py --issuer https://idp.example.com --dir ./tokens \\
        --parent-key default --key default/org/stack --resource https://api.example.com/x

The user's login (``--parent-key``) must already be in the store, for example
from your tool's ``login`` command. Its access token is sent as the assertion;
the parent keeps rotating on its own (its refresh gate applies). The derived
token is cached under ``--key``, so a second run while it is good makes no
request to the identity provider. If the provider rejects the assertion (a
skewed clock, a token it already considers expired), the parent is refreshed
once and the exchange retried.
"""

from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument("--client-id", default="cli")
    parser.add_argument("--parent-key", default="default", help="store key of the user's login")
    parser.add_argument("--key", default="default/org/stack", help="store key of the new token")
    parser.add_argument("--scope", default=None)
    parser.add_argument("--resource", default=None, help="a URL to GET with the token")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        local = grant_servers(args, stack, login_key=args.parent_key)
        return run(args, local)


def run(args: argparse.Namespace, local: bool) -> int:
    del local  # the same program either way

    store = rt.FileTokenStore(args.dir)
    with rt.OAuthClient(args.token_url, args.issuer, client_id=args.client_id) as client:
        login = rt.TokenSource(rt.RefreshTokenGrant(client), store, args.parent_key)
        grant = rt.JWTBearerGrant(client, login, scope=args.scope)
        source = rt.TokenSource(grant, store, args.key)
        try:
            token = source.token()  # from the store if still good, else one exchange
        except rt.TokenRotateError as exc:
            # The key says which login is at fault: the parent's, or the derived one's.
            print(f"error ({type(exc).__name__}, key {exc.key!r}): {exc}", file=sys.stderr)
            return 1
        now = time.time()
        expires = "never" if token.expires_at is None else f"in {token.expires_at - now:.0f} s"
        print(f"token for {args.key!r} from {args.parent_key!r}: expires {expires}")
        if args.resource:
            # attaches the token to that origin only, refreshes on a 401
            auth = rt.TokenRotateAuth(source, origins=args.resource)
            with requests.get(args.resource, auth=auth, timeout=10) as response:
                print(f"GET {args.resource} -> {response.status_code}")
                return 0 if response.ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
