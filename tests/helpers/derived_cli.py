"""A small CLI, run twice by the tests: a derived per-stack token used against a resource.

It builds the parent source (the user's rotating login, ``RefreshTokenGrant`` with
the token endpoint discovered from ``--issuer``) and a derived source (token exchange
or JWT bearer, key ``profile/org/stack``) on a FileTokenStore in ``--dir``, with the
discovery cache in ``--cache-dir``. It GETs ``--resource`` with the derived token and
prints one JSON line: the status and the subject the resource saw.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import requests

import requests_tokenrotate as rt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--resource", required=True)
    parser.add_argument("--grant", choices=("exchange", "jwt"), default="exchange")
    parser.add_argument("--parent-key", default="profile")
    parser.add_argument("--key", default="profile/org/stack")
    args = parser.parse_args(argv)

    store = rt.FileTokenStore(args.dir)
    with rt.OAuthClient(
        issuer=args.issuer, client_id="cli", cache_dir=args.cache_dir, timeout=(2, 5)
    ) as client:
        parent = rt.TokenSource(rt.RefreshTokenGrant(client), store, args.parent_key)
        grant: rt.TokenExchangeGrant | rt.JWTBearerGrant
        if args.grant == "exchange":
            grant = rt.TokenExchangeGrant(client, parent, audience="stack")
        else:
            grant = rt.JWTBearerGrant(client, parent)
        token = rt.TokenSource(grant, store, args.key).token()
    headers = {"Authorization": f"{token.token_type} {token.access_token}"}
    with requests.get(args.resource, headers=headers, timeout=5) as response:
        print(json.dumps({"status": response.status_code, "sub": response.json().get("sub")}))
    return 0 if response.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
