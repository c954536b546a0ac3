"""Shared by the examples: use the given servers, or start a loopback LocalIdP.

Every example runs as it is (``python examples/<name>.py``) against a throwaway
:class:`requests_tokenrotate.testing.LocalIdP`, or against real servers when
``--api`` and ``--token-url``/``--issuer`` are given.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from dataclasses import dataclass

import requests_tokenrotate as rt


@dataclass
class Setup:
    api: str
    token_url: str | None
    issuer: str | None
    store: rt.FileTokenStore


def arguments(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--api", help="API base URL (default: a loopback LocalIdP)")
    parser.add_argument("--token-url", help="token endpoint")
    parser.add_argument("--issuer", help="issuer URL (OIDC discovery)")
    parser.add_argument("--client-id", default="cli")
    parser.add_argument("--dir", help="token directory (default: a temporary one)")
    parser.add_argument("--key", default="default", help="token-store key (profile)")
    return parser


def setup(args: argparse.Namespace, stack: contextlib.ExitStack, *, seed: bool = True) -> Setup:
    """Resolve the servers; with none given, start a LocalIdP and log in once."""
    directory = args.dir or stack.enter_context(tempfile.TemporaryDirectory())
    store = rt.FileTokenStore(directory)
    if args.api:
        return Setup(args.api, args.token_url, args.issuer, store)
    from requests_tokenrotate.testing import LocalIdP

    idp = stack.enter_context(LocalIdP())
    if seed:
        rt.TokenSource(lambda stale: stale, store, args.key).login(idp.issue_tokens())
    return Setup(idp.url, idp.token_url, idp.issuer, store)


def grant_servers(
    args: argparse.Namespace, stack: contextlib.ExitStack, *, login_key: str | None = None
) -> bool:
    """For the grant examples: with neither ``--issuer`` nor ``--token-url``, start a
    LocalIdP and point ``args`` at it (issuer, a temporary ``--dir``, its resource),
    logging the user in under ``login_key`` first. Returns True if it did."""
    if args.issuer or args.token_url:
        return False
    from requests_tokenrotate.testing import LocalIdP

    idp = stack.enter_context(LocalIdP())
    args.issuer = idp.issuer
    args.dir = args.dir or stack.enter_context(tempfile.TemporaryDirectory())
    args.resource = args.resource or idp.resource_url
    if login_key is not None:
        store = rt.FileTokenStore(args.dir)
        rt.TokenSource(lambda stale: stale, store, login_key).login(idp.issue_tokens())
    return True
