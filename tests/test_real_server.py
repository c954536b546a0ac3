"""The library against a real authorization server written by others: django-oauth-toolkit.

DOT runs as it ships (``tests/helpers/dot_server``), configured with refresh-token
rotation and reuse protection: replaying a rotated refresh token revokes the
whole family, so any double spend by us shows up as dead tokens. Its access
tokens are opaque (expiry only from ``expires_in``), its OIDC issuer has a path
(``/o``), its challenges have no space after commas, and it takes no chunked
bodies. Each test mints its own token family with the password grant.
"""

from __future__ import annotations

import hashlib
import io
import time

import pytest
import requests

import requests_tokenrotate as rt
from requests_tokenrotate._challenges import bearer_error, parse_challenges
from requests_tokenrotate._token import fingerprint

SHORT = "read write short"  # DOT gives tokens with this scope the short lifetime


class Recorder(requests.Session):
    """The token-endpoint session: records every call the library makes to DOT."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args, **kwargs) -> None:
        self.calls.append((response.request.method, response.url))


@pytest.fixture
def recorder():
    with Recorder() as session:
        yield session


def make_source(dot, store, recorder, key="dot", **kwargs) -> rt.TokenSource:
    """A refresh-token source for DOT's public client."""
    client = rt.OAuthClient(
        token_url=dot.token_url,
        client_id=dot.client_id("public"),
        timeout=(5, 10),
        session=recorder,
    )
    return rt.TokenSource(rt.RefreshTokenGrant(client), store, key, **kwargs)


def expired(response: dict) -> rt.Token:
    """DOT's answer as a token the local clock already considers expired."""
    return rt.Token.from_response(response).replace(expires_at=time.time() - 1)


def expired_at_server(dot, source, scope=SHORT) -> dict:
    """Log ``source`` in with a short-lived token that DOT has expired but we have not.

    The local copy has no expiry (as if the server had not sent ``expires_in``), so
    the client sends it and only DOT's answer can tell it is stale.
    """
    response = dot.mint(scope=scope)
    source.login(rt.Token.from_response(response).replace(expires_at=None))
    dot.wait_until_expired(response["access_token"])
    return response


# -- the storm ------------------------------------------------------------------
def test_eight_processes_by_four_threads_spend_one_refresh_token_at_dot(
    dot_server, tmp_path, recorder, fleet
):
    """8 processes x 4 threads, one expired token: DOT sees 1 refresh, nobody sees invalid_grant."""
    store = rt.FileTokenStore(tmp_path)
    response = dot_server.mint()
    make_source(dot_server, store, recorder).login(expired(response))
    workers = fleet(
        str(tmp_path), dot_server.token_url, client_id=dot_server.client_id("public"), key="dot"
    )
    results = workers.run(hosts=1, processes=8, threads=4)
    assert len(results) == 32
    assert [r for r in results if "error" in r] == []
    stored = store.load("dot")
    assert {r["token"] for r in results} == {fingerprint(stored.access_token)}
    # The bracket check: the callers were in flight together, so the race was real.
    first_end = min(r["end"] for r in results)
    assert sum(r["start"] < first_end for r in results) >= 16
    # At the server: exactly one rotation, and reuse protection never fired.
    stats = dot_server.stats(refresh_token=response["refresh_token"])
    assert stats == {"issued": 2, "refreshes": 1, "revoked": 1, "live": 1}
    assert stored.refresh_token != response["refresh_token"]
    # The stored refresh token is the live one: one more gated refresh succeeds.
    after = make_source(dot_server, store, recorder)
    renewed = after.refresh(after.token())
    assert dot_server.resource_status(renewed.access_token) == 200
    stats = dot_server.stats(refresh_token=response["refresh_token"])
    assert stats == {"issued": 3, "refreshes": 2, "revoked": 2, "live": 1}


# -- the transport: reactive refresh after DOT expired the token -------------------
def test_adapter_refreshes_once_after_dot_expires_the_access_token(dot_server, recorder):
    """Mounted adapter: DOT's 401 for an expired token -> one refresh -> the retry gets 200."""
    source = make_source(dot_server, rt.MemoryTokenStore(), recorder)
    response = expired_at_server(dot_server, source)
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source)
        with session.get(dot_server.resource_url, timeout=10) as answer:
            assert answer.status_code == 200
            assert [r.status_code for r in answer.history] == [401]
            assert answer.json()["user"] == dot_server.username
    assert recorder.calls == [("POST", dot_server.token_url)]
    assert dot_server.stats(refresh_token=response["refresh_token"])["refreshes"] == 1


def test_auth_refreshes_once_after_dot_expires_the_access_token(dot_server, recorder):
    """auth=TokenRotateAuth: DOT's 401 -> one refresh -> the retry gets 200."""
    source = make_source(dot_server, rt.MemoryTokenStore(), recorder)
    response = expired_at_server(dot_server, source)
    auth = rt.TokenRotateAuth(source, origins=dot_server.base_url)
    with requests.get(dot_server.resource_url, auth=auth, timeout=10) as answer:
        assert answer.status_code == 200
        assert [r.status_code for r in answer.history] == [401]
        assert answer.json()["user"] == dot_server.username
    assert recorder.calls == [("POST", dot_server.token_url)]
    assert dot_server.stats(refresh_token=response["refresh_token"])["refreshes"] == 1


def test_adapter_refreshes_on_dots_bare_403(dot_server, recorder):
    """DOT's default ProtectedResourceView answers a bare 403: refresh_on=(401, 403) covers it."""
    source = make_source(dot_server, rt.MemoryTokenStore(), recorder)
    response = expired_at_server(dot_server, source)
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source, cooldown=0)
        with session.get(dot_server.legacy_url, timeout=10) as answer:
            assert answer.status_code == 200
            assert [r.status_code for r in answer.history] == [403]
            assert answer.history[0].headers.get("WWW-Authenticate") is None
    assert dot_server.stats(refresh_token=response["refresh_token"])["refreshes"] == 1


PAYLOAD = bytes(range(256)) * 64 + b"end"


@pytest.mark.parametrize("kind", ["bytes", "str", "file_at_offset"])
def test_body_is_replayed_byte_for_byte_after_dots_401(dot_server, recorder, kind):
    """POST with Content-Length after DOT expired the token: the retry sends identical bytes."""
    if kind == "bytes":
        body, expected = PAYLOAD, PAYLOAD
    elif kind == "str":
        body = "héllo wörld " * 500
        expected = body.encode()
    else:
        body = io.BytesIO(b"skip me:" + PAYLOAD)
        body.seek(len(b"skip me:"))
        expected = PAYLOAD
    source = make_source(dot_server, rt.MemoryTokenStore(), recorder)
    expired_at_server(dot_server, source)
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source)
        with session.post(dot_server.resource_url, data=body, timeout=10) as answer:
            assert answer.status_code == 200
            assert [r.status_code for r in answer.history] == [401]
            assert "chunked" not in answer.request.headers.get("Transfer-Encoding", "")
            echoed = answer.json()
    assert echoed["length"] == len(expected)
    assert echoed["sha256"] == hashlib.sha256(expected).hexdigest()


# -- RFC 6750 challenges as DOT writes them ------------------------------------------
def test_dots_www_authenticate_headers_parse(dot_server):
    """DOT's challenges (no space after commas, a URL value) parse; with a Basic one too."""
    with requests.get(
        dot_server.resource_url, headers={"Authorization": "Bearer not-a-token"}, timeout=10
    ) as answer:
        assert answer.status_code == 401
        invalid = answer.headers["WWW-Authenticate"]
    assert '",error=' in invalid  # the exact shape DOT sends: no space after the comma
    [(scheme, params)] = parse_challenges(invalid)
    assert scheme == "bearer"
    assert params["realm"] == "api"
    assert params["error"] == "invalid_token"
    assert params["error_description"] == "The access token is invalid."
    assert params["resource_metadata"].startswith(dot_server.issuer + "/.well-known/")
    assert bearer_error(invalid) == "invalid_token"
    # requests joins repeated headers with ", ": a proxy's Basic challenge in front.
    joined = f'Basic realm="proxy", {invalid}'
    assert [s for s, _ in parse_challenges(joined)] == ["basic", "bearer"]
    assert bearer_error(joined) == "invalid_token"

    token = dot_server.mint()["access_token"]
    with requests.get(
        dot_server.admin_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as answer:
        assert answer.status_code == 403
        scope = answer.headers["WWW-Authenticate"]
    assert bearer_error(scope) == "insufficient_scope"


def test_dots_insufficient_scope_403_is_returned_without_a_refresh(dot_server, recorder):
    """A 403 insufficient_scope from DOT never spends a refresh token."""
    source = make_source(dot_server, rt.MemoryTokenStore(), recorder)
    response = dot_server.mint()
    source.login(response)
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source, cooldown=0)
        with session.get(dot_server.admin_url, timeout=10) as answer:
            assert answer.status_code == 403
            assert answer.history == []
    assert recorder.calls == []
    assert dot_server.stats(refresh_token=response["refresh_token"])["refreshes"] == 0


# -- discovery, client credentials, opaque tokens -------------------------------------
def test_lazy_discovery_from_dots_document_with_an_issuer_path(dot_server, tmp_path, recorder):
    """OAuthClient(issuer=".../o"): no discovery until a refresh is needed; then it works, cached."""
    cache = str(tmp_path / "discovery")
    client = rt.OAuthClient(
        issuer=dot_server.issuer,
        client_id=dot_server.client_id("public"),
        cache_dir=cache,
        session=recorder,
    )
    source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "dot")
    response = dot_server.mint()
    source.login(response)
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source)
        with session.get(dot_server.resource_url, timeout=10) as answer:
            assert answer.status_code == 200
    assert recorder.calls == []  # a usable token: no discovery, no token call

    source.login(expired(response))
    token = source.token()
    assert recorder.calls == [("GET", dot_server.discovery_url), ("POST", dot_server.token_url)]
    assert client.token_endpoint() == dot_server.token_url
    assert dot_server.resource_status(token.access_token) == 200

    # A new client (a new process, say) reads the document from the disk cache.
    recorder.calls.clear()
    again = rt.OAuthClient(
        issuer=dot_server.issuer,
        client_id=dot_server.client_id("public"),
        cache_dir=cache,
        session=recorder,
    )
    renewed = rt.RefreshTokenGrant(again)(token)
    assert recorder.calls == [("POST", dot_server.token_url)]
    assert dot_server.resource_status(renewed.access_token) == 200


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_token_from_dot(dot_server, recorder, auth_method):
    """ClientCredentialsGrant against DOT: a token without a refresh token, reused while fresh."""
    client = rt.OAuthClient(
        token_url=dot_server.token_url,
        client_id=dot_server.client_id("service"),
        client_secret=dot_server.client_secret("service"),
        auth_method=auth_method,
        session=recorder,
    )
    source = rt.TokenSource(rt.ClientCredentialsGrant(client), rt.MemoryTokenStore(), "svc")
    token = source.token()
    assert token.refresh_token is None
    assert token.expires_at == pytest.approx(time.time() + 300, abs=30)
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source)
        with session.get(dot_server.resource_url, timeout=10) as answer:
            assert answer.status_code == 200
            assert answer.json()["client_id"] == dot_server.client_id("service")
            assert answer.json()["user"] is None
    assert source.token() is token
    assert recorder.calls == [("POST", dot_server.token_url)]


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_client_secret_with_reserved_characters(dot_server, recorder, auth_method):
    """A secret with '+', '%', ' ', ':', '&', non-ASCII: DOT decodes Basic auth per RFC 6749 §2.3.1."""
    client = rt.OAuthClient(
        token_url=dot_server.token_url,
        client_id=dot_server.client_id("special"),
        client_secret=dot_server.client_secret("special"),
        auth_method=auth_method,
        session=recorder,
    )
    token = rt.ClientCredentialsGrant(client)(None)
    assert dot_server.resource_status(token.access_token) == 200


def test_opaque_access_token_expiry_comes_from_expires_in(dot_server, recorder, clock):
    """DOT's opaque tokens: expires_at = now + expires_in; refreshed by the local clock alone."""
    clock.now = time.time()
    client = rt.OAuthClient(
        token_url=dot_server.token_url,
        client_id=dot_server.client_id("public"),
        session=recorder,
        clock=clock,
    )
    source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "dot", clock=clock)
    response = dot_server.mint()
    assert response["access_token"].count(".") != 2  # not a JWT: nothing to decode
    token = source.login(response)
    assert token.expires_at == pytest.approx(clock.now + response["expires_in"])
    assert response["expires_in"] == 300
    assert source.token() is token
    assert recorder.calls == []

    clock.advance(response["expires_in"])  # expired by the local clock; DOT still accepts it
    renewed = source.token()
    assert recorder.calls == [("POST", dot_server.token_url)]
    assert renewed.access_token != token.access_token
    assert renewed.expires_at == pytest.approx(clock.now + 300)
    assert dot_server.stats(refresh_token=response["refresh_token"])["refreshes"] == 1

    short = source.login(dot_server.mint(scope=SHORT))
    assert short.expires_at == pytest.approx(clock.now + dot_server.short_lifetime)


# -- a refresh token revoked at the server ----------------------------------------
def test_refresh_token_revoked_at_dot_raises_token_invalidated_and_login_recovers(
    dot_server, tmp_path, recorder
):
    """Revoked via /o/revoke_token/: TokenInvalidated, store stamped, fail fast; login recovers."""
    store = rt.FileTokenStore(tmp_path)
    source = make_source(dot_server, store, recorder, hint="run `tool login`")
    response = dot_server.mint()
    source.login(expired(response))
    dot_server.revoke(response["refresh_token"])

    with pytest.raises(rt.TokenInvalidated, match="run `tool login`") as info:
        source.token()
    assert info.value.key == "dot"
    assert recorder.calls == [("POST", dot_server.token_url)]
    assert store.load("dot").invalidated_at is not None

    recorder.calls.clear()
    with pytest.raises(rt.TokenInvalidated):
        source.token()
    with pytest.raises(rt.TokenInvalidated):
        make_source(dot_server, store, recorder).token()  # another process, say
    with requests.Session() as session:
        rt.mount(session, dot_server.base_url + "/", source)
        with pytest.raises(rt.TokenInvalidated):
            session.get(dot_server.resource_url, timeout=10)
    assert recorder.calls == []  # fail fast: no network call

    fresh = dot_server.mint()
    source.login(fresh)
    assert store.load("dot").invalidated_at is None
    renewed = source.refresh(source.token())
    assert dot_server.resource_status(renewed.access_token) == 200
    assert dot_server.stats(refresh_token=fresh["refresh_token"])["refreshes"] == 1
