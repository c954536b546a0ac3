"""Device login, browser login (PKCE) and revocation against django-oauth-toolkit, end to end.

DOT runs as it ships (``tests/helpers/dot_server``): its device views and its
authorize view are driven over HTTP by a signed-in session (the scripted
browser), as a user's browser would. Each login is followed by a refresh
through ``rt.mount``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import requests_tokenrotate as rt

BROWSER = Path(__file__).parent / "helpers" / "scripted_browser.py"


def signed_in(dot) -> requests.Session:
    session = requests.Session()
    form = {"username": dot.username, "password": dot.password}
    with session.post(f"{dot.base_url}/test/login", data=form, timeout=10) as response:
        assert response.status_code == 204
    return session


def approve_device(dot, user_code: str) -> None:
    """What the user does in the browser: enter the code at DOT's device page, then accept."""
    with signed_in(dot) as session:
        entered = session.post(f"{dot.issuer}/device/", data={"user_code": user_code},
                               allow_redirects=False, timeout=10)  # fmt: skip
        assert entered.status_code == 302, entered.text[:500]
        confirm = requests.compat.urljoin(dot.base_url, entered.headers["Location"])
        accepted = session.post(confirm, data={"action": "accept"}, allow_redirects=False,
                                timeout=10)  # fmt: skip
        assert accepted.status_code == 302, accepted.text[:500]


def refresh_through_mount(dot, source) -> None:
    """Expire the stored token locally; a request through rt.mount refreshes it at DOT."""
    stored = source.store.load(source.key)
    source.login(stored.replace(expires_at=time.time() - 1))
    with requests.Session() as session:
        rt.mount(session, dot.base_url + "/", source)
        response = session.get(dot.resource_url, timeout=10)
        assert response.status_code == 200
    assert source.store.load(source.key).refresh_token != stored.refresh_token  # rotated


def browser(dot):
    env = {**os.environ, "SCRIPTED_BROWSER_LOGIN": f"{dot.base_url}/test/login",
           "SCRIPTED_BROWSER_USER": dot.username, "SCRIPTED_BROWSER_PASSWORD": dot.password}  # fmt: skip

    def open_browser(url):
        return subprocess.run([sys.executable, str(BROWSER), url], env=env, timeout=60).returncode

    return open_browser


@pytest.fixture
def make_source(dot_server, tmp_path):
    clients = []

    def make(app: str, **kwargs) -> rt.TokenSource:
        client = rt.OAuthClient(
            issuer=dot_server.issuer, client_id=dot_server.client_id(app),
            client_secret=dot_server.client_secret(app), discovery_ttl=0, cache_dir=tmp_path,
            device_authorization_url=f"{dot_server.issuer}/device-authorization/",
            revocation_url=dot_server.revoke_url, **kwargs,
        )  # fmt: skip
        clients.append(client)
        return rt.TokenSource(rt.RefreshTokenGrant(client), rt.FileTokenStore(tmp_path), app)

    yield make
    for client in clients:
        client.close()


def test_device_login_at_dot_then_refresh(dot_server, make_source):
    """RFC 8628 against DOT: pending until the user accepts, then a token that refreshes."""
    source = make_source("device")
    token = rt.login_device(source, scope="read write",
                            prompt=lambda code: approve_device(dot_server, code.user_code))  # fmt: skip
    assert token.refresh_token is not None
    assert dot_server.resource_status(token.access_token) == 200
    refresh_through_mount(dot_server, source)


def test_device_login_denied_at_dot(dot_server, make_source):
    """The user denies at DOT's confirm page: LoginError access_denied, nothing stored."""
    source = make_source("device")

    def deny(code):
        with signed_in(dot_server) as session:
            entered = session.post(f"{dot_server.issuer}/device/", allow_redirects=False,
                                   data={"user_code": code.user_code}, timeout=10)  # fmt: skip
            confirm = requests.compat.urljoin(dot_server.base_url, entered.headers["Location"])
            session.post(confirm, data={"action": "deny"}, allow_redirects=False, timeout=10)

    with pytest.raises(rt.LoginError) as caught:
        rt.login_device(source, prompt=deny)
    assert caught.value.error == "access_denied"
    assert source.store.load("device") is None


@pytest.mark.parametrize("app", ["browser", "webapp"])
def test_browser_login_with_pkce_at_dot_then_refresh(dot_server, make_source, app):
    """Code + PKCE S256 + loopback redirect + RFC 9207 iss, public and confidential clients."""
    source = make_source(app)
    token = rt.login_browser(source, scope="read write", open_browser=browser(dot_server),
                             announce=None, timeout=60)  # fmt: skip
    assert token.refresh_token is not None
    assert dot_server.resource_status(token.access_token) == 200
    refresh_through_mount(dot_server, source)


def test_logout_revoke_at_dot_then_refresh_is_invalid_grant(dot_server, make_source):
    """logout(revoke=True) at DOT: the old refresh token is dead (invalid_grant) at DOT."""
    source = make_source("public")
    token = source.login(dot_server.mint())
    source.logout(revoke=True)
    assert source.store.load("public") is None
    assert dot_server.resource_status(token.access_token) == 401
    form = {"grant_type": "refresh_token", "client_id": dot_server.client_id("public"),
            "refresh_token": token.refresh_token}  # fmt: skip
    with requests.post(dot_server.token_url, data=form, timeout=10) as refused:
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
    # Logged in again (a fresh family): the source refreshes through rt.mount as before.
    source.login(dot_server.mint())
    refresh_through_mount(dot_server, source)
