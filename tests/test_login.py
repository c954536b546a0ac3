"""Device-code and browser login, and revocation on logout, against LocalIdP."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP

BROWSER = Path(__file__).parent / "helpers" / "scripted_browser.py"


@pytest.fixture
def idp(clock):
    with LocalIdP(access_token_lifetime=600, clock=clock) as server:
        yield server


@pytest.fixture
def source(idp, clock):
    client = rt.OAuthClient(issuer=idp.issuer, client_id="cli", discovery_ttl=0, clock=clock)
    with client:
        yield rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "k", clock=clock)


class Sleeper:
    """The injected sleep: advances the shared clock, and runs an action on the Nth call."""

    def __init__(self, clock, action=None, on_call=0):
        self.clock, self.action, self.on_call, self.calls = clock, action, on_call, []

    def __call__(self, seconds):
        self.calls.append(seconds)
        self.clock.advance(seconds)
        if self.action is not None and len(self.calls) == self.on_call:
            self.action()


def scripted_browser(**env):
    """An ``open_browser`` that runs tests/helpers/scripted_browser.py as a separate process."""
    import os

    def open_browser(url):
        environment = {**os.environ, **env}
        return subprocess.run([sys.executable, str(BROWSER), url], env=environment, timeout=30)

    return open_browser


# -- device authorization (RFC 8628) ------------------------------------------------
def test_device_login_polls_while_pending_then_stores_the_token(idp, source, clock):
    """Two authorization_pending answers, then approval: the token is stored, polls were spaced."""
    codes = []
    sleep = Sleeper(clock, lambda: idp.approve_device(codes[0].user_code), on_call=3)
    token = rt.login_device(source, scope="read offline_access", prompt=codes.append, sleep=sleep,
                            clock=clock)  # fmt: skip
    assert source.store.load("k") == token
    assert token.refresh_token is not None
    assert token.scope == "read offline_access"
    assert sleep.calls == [5.0, 5.0, 5.0]  # the server's interval, before every poll
    assert idp.device_polls == 3
    assert codes[0].verification_uri == idp.issuer + "/device"
    assert "device_code" not in repr(codes[0])


def test_device_login_slows_down_by_five_seconds(idp, source, clock):
    """slow_down adds 5 s to the interval for the rest of the login (RFC 8628 §3.5)."""
    idp.device_answer_next("slow_down")
    idp.device_answer_next("authorization_pending")
    sleep = Sleeper(clock)
    rt.login_device(source, prompt=lambda code: idp.approve_device(code.user_code), sleep=sleep,
                    clock=clock)  # fmt: skip
    assert sleep.calls == [5.0, 10.0, 10.0]


def test_device_login_that_polls_too_fast_is_told_to_slow_down(idp, source, clock):
    """The IdP enforces the interval: a client that ignored it would see slow_down."""
    answer = requests.post(
        idp.issuer + "/device_authorization", data={"client_id": "cli"}, timeout=10
    )
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": "cli",
            "device_code": answer.json()["device_code"]}  # fmt: skip
    first = requests.post(idp.token_url, data=form, timeout=10)
    assert first.json()["error"] == "slow_down"  # polled at once, not after 5 s


def test_device_login_denied_stores_nothing(idp, source, clock):
    """access_denied is a LoginError; the previous token stays."""
    previous = source.login(idp.issue_tokens())
    with pytest.raises(rt.LoginError) as caught:
        rt.login_device(source, prompt=lambda code: idp.deny_device(code.user_code),
                        sleep=Sleeper(clock), clock=clock)  # fmt: skip
    assert caught.value.error == "access_denied"
    assert source.store.load("k") == previous


def test_device_login_stops_when_the_code_expires(idp, source, clock):
    """Never approved: polling stops at expires_in, with LoginError expired_token, nothing stored."""
    idp.device_code_lifetime = 12
    sleep = Sleeper(clock)
    with pytest.raises(rt.LoginError) as caught:
        rt.login_device(source, prompt=lambda code: None, sleep=sleep, clock=clock)
    assert caught.value.error == "expired_token"
    assert sleep.calls == [5.0, 5.0, 2.0]
    assert idp.device_polls == 2  # no poll after the deadline
    assert source.store.load("k") is None


def test_device_login_expired_token_answer(idp, source, clock):
    """The server's own expired_token answer ends the login too."""
    idp.device_answer_next("expired_token")
    with pytest.raises(rt.LoginError, match="expired") as caught:
        rt.login_device(source, prompt=lambda code: None, sleep=Sleeper(clock), clock=clock)
    assert caught.value.error == "expired_token"
    assert pickle.loads(pickle.dumps(caught.value)).error == "expired_token"


def test_device_login_interrupted_leaves_the_key_as_it_was(idp, source, clock):
    """Ctrl-C while polling: nothing half-written, the old token is still there."""
    previous = source.login(idp.issue_tokens())

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rt.login_device(source, prompt=lambda code: None, sleep=Sleeper(clock, interrupt, 2),
                        clock=clock)  # fmt: skip
    assert source.store.load("k") == previous


def test_device_login_with_a_confidential_client_and_a_resource(idp, clock):
    """client_secret_basic on both endpoints; the resource indicator reaches the token."""
    client = rt.OAuthClient(issuer=idp.issuer, client_id="confidential",
                            client_secret="s3cret-client", discovery_ttl=0, clock=clock)  # fmt: skip
    token = rt.login_device(client, resource="https://api.example", sleep=Sleeper(clock),
                            prompt=lambda code: idp.approve_device(code.user_code), clock=clock)  # fmt: skip
    import jwt

    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert claims["aud"] == "https://api.example"
    assert claims["client_id"] == "confidential"


def test_login_warns_when_no_refresh_token_comes_back(source, caplog):
    """A token without refresh token is stored, with a WARNING about offline_access."""
    from requests_tokenrotate._login import finish

    with caplog.at_level(logging.WARNING, logger="requests_tokenrotate"):
        finish(rt.Token(access_token="at", expires_at=None), source, "device")
    assert "offline_access" in caplog.text
    assert source.store.load("k").access_token == "at"


# -- browser: authorization code + PKCE, loopback redirect --------------------------
def test_browser_login_with_pkce_and_a_refresh_through_mount(idp, source, clock):
    """The scripted browser completes the login; the token works and refreshes via rt.mount."""
    token = rt.login_browser(source, scope="read", resource="https://api.example",
                             extra={"login_hint": "alice"}, open_browser=scripted_browser(),
                             announce=None, timeout=30)  # fmt: skip
    assert source.store.load("k") == token
    request = idp.authorization_requests[-1]
    assert request["code_challenge_method"] == "S256"
    assert len(request["code_challenge"]) == 43
    assert request["scope"] == "read"
    assert request["login_hint"] == "alice"
    assert request["redirect_uri"].startswith("http://127.0.0.1:")
    exchange = idp.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert len(exchange["code_verifier"]) >= 43
    clock.advance(601)  # expired: the next request refreshes first
    with requests.Session() as session:
        rt.mount(session, idp.url + "/", source)
        assert session.get(idp.resource_url, timeout=10).json()["ok"]
    assert idp.refresh_calls == 1


def test_browser_login_refuses_a_wrong_state_and_stores_nothing(idp, source):
    """A forged answer (state mismatch) is a LoginError; no code is exchanged, nothing stored."""
    previous = source.login(idp.issue_tokens())
    with pytest.raises(rt.LoginError) as caught:
        rt.login_browser(source, open_browser=scripted_browser(SCRIPTED_BROWSER_STATE="forged"),
                         announce=None, timeout=30)  # fmt: skip
    assert caught.value.error == "state_mismatch"
    assert "forged" not in str(caught.value)
    assert source.store.load("k") == previous
    assert not [r for r in idp.token_requests if r["grant_type"] == "authorization_code"]


def test_browser_login_refuses_another_issuer(idp, source):
    """RFC 9207: an iss that is not the issuer's is refused."""
    opener = scripted_browser(SCRIPTED_BROWSER_ISS="https://evil.example")
    with pytest.raises(rt.LoginError) as caught:
        rt.login_browser(source, open_browser=opener, announce=None, timeout=30)
    assert caught.value.error == "issuer_mismatch"
    assert source.store.load("k") is None


def test_browser_login_requires_iss_when_the_server_advertises_it(idp, source):
    """The discovery document promises iss; an answer without it is refused."""
    idp.send_iss = False
    with pytest.raises(rt.LoginError) as caught:
        rt.login_browser(source, open_browser=scripted_browser(), announce=None, timeout=30)
    assert caught.value.error == "issuer_mismatch"


def test_browser_login_without_iss_when_not_advertised(idp, source):
    """A server that neither advertises nor sends iss is accepted."""
    idp.send_iss = False
    idp.discovery_overrides["authorization_response_iss_parameter_supported"] = None
    token = rt.login_browser(source, open_browser=scripted_browser(), announce=None, timeout=30)
    assert source.store.load("k") == token


def test_browser_login_error_answer_is_typed(idp, source):
    """error=access_denied on the callback is a LoginError with .error."""
    idp.authorization_decision = "access_denied"
    with pytest.raises(rt.LoginError) as caught:
        rt.login_browser(source, open_browser=scripted_browser(), announce=None, timeout=30)
    assert caught.value.error == "access_denied"
    assert source.store.load("k") is None


def test_browser_login_gives_up_after_the_timeout(source):
    """No answer from the browser: LoginError timeout after the bounded wait."""
    urls = []
    with pytest.raises(rt.LoginError) as caught:
        rt.login_browser(source, open_browser=None, announce=urls.append, timeout=0.3)
    assert caught.value.error == "timeout"
    assert urls
    assert "code_challenge=" in urls[0]


def test_browser_login_with_a_confidential_client(idp, clock):
    """A confidential client authenticates at the token endpoint; the token is returned."""
    client = rt.OAuthClient(issuer=idp.issuer, client_id="confidential",
                            client_secret="s3cret-client", discovery_ttl=0, clock=clock)  # fmt: skip
    token = rt.login_browser(client, open_browser=scripted_browser(), announce=None, timeout=30)
    assert token.refresh_token is not None
    assert idp.token_requests[-1]["_auth_method"] == "client_secret_basic"


def test_localidp_checks_the_pkce_verifier(idp):
    """The IdP refuses a code exchanged with the wrong verifier (RFC 7636 §4.6)."""
    query = {"response_type": "code", "client_id": "cli", "state": "s",
             "redirect_uri": "http://127.0.0.1:9/cb", "code_challenge": "x" * 43,
             "code_challenge_method": "S256"}  # fmt: skip
    answer = requests.get(
        idp.issuer + "/authorize", params=query, allow_redirects=False, timeout=10
    )
    code = dict(p.split("=") for p in answer.headers["Location"].split("?")[1].split("&"))["code"]
    form = {"grant_type": "authorization_code", "client_id": "cli", "code": code,
            "redirect_uri": "http://127.0.0.1:9/cb", "code_verifier": "y" * 43}  # fmt: skip
    refused = requests.post(idp.token_url, data=form, timeout=10)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


# -- revocation (RFC 7009) ------------------------------------------------------------
def test_logout_revoke_kills_the_refresh_token_at_the_server(idp, source):
    """logout(revoke=True): the key is gone and the old refresh token answers invalid_grant."""
    token = source.login(idp.issue_tokens())
    source.logout(revoke=True)
    assert source.store.load("k") is None
    assert idp.revocations == 2  # the refresh token, then the access token
    form = {"grant_type": "refresh_token", "client_id": "cli", "refresh_token": token.refresh_token}
    refused = requests.post(idp.token_url, data=form, timeout=10)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {token.access_token}"}
    assert requests.get(idp.resource_url, headers=bearer, timeout=10).status_code == 401


def test_revoked_token_then_refresh_is_token_invalidated(idp, source, clock):
    """OAuthClient.revoke, then the source's refresh: TokenInvalidated (invalid_grant)."""
    token = source.login(idp.issue_tokens())
    source.grant.client.revoke(token.refresh_token, token_type_hint="refresh_token")
    clock.advance(601)
    with pytest.raises(rt.TokenInvalidated):
        source.token()


def test_failed_revocation_keeps_the_local_copy(idp, source):
    """A 503 from the revocation endpoint: RevocationError, the token is kept; a retry works."""
    token = source.login(idp.issue_tokens())
    idp.fail_next(3, "503", endpoint="revocation")  # every attempt (revocation is retried)
    with pytest.raises(rt.RevocationError, match="may still be live") as caught:
        source.logout(revoke=True)
    assert caught.value.key == "k"
    assert caught.value.status_code == 503
    assert token.refresh_token not in str(caught.value)
    assert source.store.load("k") == token
    source.logout(revoke=True)
    assert source.store.load("k") is None


def test_revocation_needs_an_endpoint(clock):
    """A client without issuer or revocation_url cannot revoke: InvalidConfiguration."""
    client = rt.OAuthClient(token_url="https://idp.example/token", client_id="cli")
    with pytest.raises(rt.InvalidConfiguration, match="revocation_url"):
        client.revoke("t")
