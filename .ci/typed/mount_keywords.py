"""mypy --strict must reject a misspelt keyword to rt.mount (it fails at run time)."""

from __future__ import annotations

import requests

import requests_tokenrotate as rt

client = rt.OAuthClient(token_url="https://idp.example.com/token", client_id="cli")
source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "default")
session = requests.Session()
rt.mount(session, "https://api.example.com/", source, refresh_on=(401,), max_retries=3)
rt.mount(session, "https://api.example.com/", source, refresh_onn=401)  # expect-error: refresh_onn
