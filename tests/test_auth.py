"""TokenRotateAuth: what is specific to the auth.

The behaviour it shares with TokenRotateAdapter is tested for both in test_transport.py.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
import responses
from helpers.challenge_server import ChallengeServer

import requests_tokenrotate as rt

API = "https://api.example.com"


@pytest.fixture
def source():
    """A logged-in source whose grant mints tok-2, tok-3, ... without any network."""
    minted = iter(range(2, 1000))

    def grant(stale):
        return rt.Token(f"tok-{next(minted)}", expires_at=time.time() + 3600)

    source = rt.TokenSource(grant, rt.MemoryTokenStore(), key="fake")
    source.login(rt.Token("tok-1", expires_at=time.time() + 3600, obtained_at=time.time()))
    return source


def test_requests_get_with_auth_retries_a_401(clocked_idp, make_source):
    """requests.get(url, auth=...) works; the retry is recorded like HTTPDigestAuth's."""
    idp = clocked_idp
    source = make_source(idp)
    old = source.token().access_token
    idp.rotate_signing_key()
    auth = rt.TokenRotateAuth(source, origins=idp.url)
    response = requests.get(idp.resource_url, auth=auth, timeout=10)
    assert response.status_code == 200
    (first,) = response.history
    assert first.status_code == 401
    assert first.request.headers["Authorization"] == f"Bearer {old}"
    new = source.token().access_token
    assert new != old
    assert response.request.headers["Authorization"] == f"Bearer {new}"
    assert idp.refresh_calls == 1


def test_session_auth_sends_the_token(clocked_idp, make_source):
    """Session.auth = TokenRotateAuth(...) attaches the token to every request."""
    idp = clocked_idp
    with requests.Session() as session:
        session.auth = rt.TokenRotateAuth(make_source(idp), origins=idp.url)
        assert session.get(idp.resource_url).json()["ok"] is True
        assert session.post(idp.resource_url, data=b"x").json()["length"] == 1


def test_auth_with_origins_leaves_other_origins_untouched(source):
    """A request to an origin not configured gets neither the token nor a hook."""
    auth = rt.TokenRotateAuth(source, origins=[API])
    other = requests.Request("GET", "https://elsewhere.example/", auth=auth).prepare()
    assert "Authorization" not in other.headers
    assert other.hooks["response"] == []
    mine = requests.Request("GET", f"{API}/x", auth=auth).prepare()
    assert mine.headers["Authorization"] == "Bearer tok-1"
    assert len(mine.hooks["response"]) == 1


@pytest.mark.parametrize("origins", [None, [], "not a url"])
def test_auth_without_origins_is_refused(source, origins):
    """No (usable) origins: a clear configuration error, never a token sent everywhere."""
    kwargs = {} if origins is None else {"origins": origins}
    with pytest.raises(rt.InvalidConfiguration, match=r"origins"):
        rt.TokenRotateAuth(source, **kwargs)


def test_session_auth_sends_the_token_to_no_other_host(source):
    """A Session.auth shared by several hosts gives the token to its origins only."""
    auth = rt.TokenRotateAuth(source, origins=f"{API}/v1/things")  # a path is ignored
    for url in ("https://a.example/", "http://api.example.com/", "https://api.example.com:8443/"):
        prepared = requests.Request("GET", url, auth=auth).prepare()
        assert "Authorization" not in prepared.headers
    assert requests.Request("GET", f"{API}/x", auth=auth).prepare().headers["Authorization"]


def test_per_request_state_lives_in_the_hook_not_on_the_auth(source):
    """The auth object is not mutated per request (thread-safety by construction)."""
    auth = rt.TokenRotateAuth(source, origins=[API])
    before = dict(vars(auth))
    first = requests.Request("GET", f"{API}/1", auth=auth).prepare()
    second = requests.Request("GET", f"{API}/2", auth=auth).prepare()
    assert vars(auth) == before
    assert first.hooks["response"][0] is not second.hooks["response"][0]


def test_hook_retries_a_redirect_hop_401_on_the_same_origin(clocked_idp, make_source):
    """A 401 on a same-origin redirect hop is retried once with a new token."""
    idp = clocked_idp
    auth = rt.TokenRotateAuth(make_source(idp), origins=idp.url)
    idp.rotate_signing_key()
    url = f"{idp.url}/redirect?to={idp.resource_url}"
    response = requests.get(url, auth=auth, timeout=10)
    assert response.status_code == 200
    # requests rebuilds the history of a redirect chain: the hop's 401 is not in it.
    assert [r.status_code for r in response.history] == [302]
    assert [r["status"] for r in idp.resource_requests] == [401, 200]
    assert idp.refresh_calls == 1


def test_hop_to_another_origin_is_not_refreshed(clocked_idp, make_source):
    """A 401 from a redirect target on another origin is left as it is, without our header."""
    idp = clocked_idp
    auth = rt.TokenRotateAuth(
        make_source(idp), origins=idp.url, header="X-Authorization", scheme=""
    )
    with ChallengeServer(lambda headers: False) as elsewhere:
        url = f"{idp.url}/redirect?to={elsewhere.url}/x"
        response = requests.get(url, auth=auth, timeout=10)
        assert response.status_code == 401
        assert "x-authorization" not in elsewhere.requests[0]["headers"]
        assert len(elsewhere.requests) == 1
    assert idp.refresh_calls == 0


def test_auth_works_with_responses_mocks(source):
    """The hook retries through response.connection, which responses also sets."""
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, re.compile(f"{API}/.*"), status=401)
        mock.add(responses.GET, re.compile(f"{API}/.*"), status=200)
        auth = rt.TokenRotateAuth(source, origins=API)
        response = requests.get(f"{API}/x", auth=auth, timeout=10)
        assert response.status_code == 200
        assert len(mock.calls) == 2
        assert response.history[0].request.headers["Authorization"] == "Bearer tok-1"
        assert response.request.headers["Authorization"] == "Bearer tok-2"
