"""Mistakes mypy --strict must catch: it can only if it sees the package's types."""

from __future__ import annotations

import requests

import requests_tokenrotate as rt

client = rt.OAuthClient(token_url="https://idp.example.com/token", client_id="cli")
source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "default")
seconds: int = source.token()  # expect-error: incompatible types in assignment
rt.TokenRotateAuth("default")  # expect-error: Argument 1 to "TokenRotateAuth"
rt.mount(requests.Session(), 443, source)  # expect-error: Argument 2 to "mount"
source.refresh(token="abc")  # expect-error: Unexpected keyword argument "token"
