"""End-to-end tests of :class:`requests_tokenrotate.testing.LocalIdP` with plain requests."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from requests_tokenrotate import testing
from requests_tokenrotate.testing import LocalIdP

SECRET = "s3cret-client"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# The shipped fixture, registered the way a user's conftest.py would do it.
local_idp = testing.local_idp


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[LocalIdP]:
    with LocalIdP() as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refresh(http: requests.Session, idp: LocalIdP, token: str, **extra: str) -> requests.Response:
    form = {"grant_type": "refresh_token", "client_id": "cli", "refresh_token": token, **extra}
    return http.post(idp.token_url, data=form, timeout=5)


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_server_binds_loopback_ephemeral_port(idp):
    """The server listens on 127.0.0.1 and derives every address from its port."""
    assert idp.url.startswith("http://127.0.0.1:")
    assert idp.url.rsplit(":", 1)[1] != "0"
    assert idp.token_url == idp.issuer + "/token"
    assert idp.resource_url == idp.url + "/resource"
    assert idp.discovery_url == idp.issuer + "/.well-known/openid-configuration"


def test_refresh_rotates_and_reuse_is_invalid_grant(idp, http):
    """A refresh consumes the token and returns a new pair; reusing the old one fails."""
    first = idp.issue_tokens(scope="read")
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == 60
    response = refresh(http, idp, first["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == "read"
    reused = refresh(http, idp, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert "error_description" in reused.json()
    assert refresh(http, idp, second["refresh_token"]).status_code == 200  # strict: family lives
    assert (idp.token_calls, idp.refresh_calls, idp.invalid_grant) == (3, 2, 1)
    assert idp.counters()["refresh_calls"] == 2


def test_refresh_unknown_or_other_clients_token_is_invalid_grant(idp, http):
    """An unknown refresh token, or one issued to another client, is invalid_grant."""
    assert refresh(http, idp, "nope").json()["error"] == "invalid_grant"
    tokens = idp.issue_tokens("confidential")
    assert refresh(http, idp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert idp.invalid_grant == 2


def test_refresh_scope_can_only_narrow(idp, http):
    """A refresh may narrow the scope but not widen it."""
    tokens = idp.issue_tokens(scope="read write")
    narrowed = refresh(http, idp, tokens["refresh_token"], scope="read").json()
    assert narrowed["scope"] == "read"
    assert claims_of(narrowed["access_token"])["scope"] == "read"
    widened = refresh(http, idp, narrowed["refresh_token"], scope="read admin")
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"


def test_revoke_family_policy_kills_descendants(http):
    """With revoke_family, reusing a consumed token revokes the live descendants."""
    with LocalIdP(reuse_policy="revoke_family") as idp:
        first = idp.issue_tokens()
        other = idp.issue_tokens()
        second = refresh(http, idp, first["refresh_token"]).json()
        assert http.get(idp.resource_url, headers=bearer(second["access_token"])).ok
        assert refresh(http, idp, first["refresh_token"]).status_code == 400
        dead = http.get(idp.resource_url, headers=bearer(second["access_token"]))
        assert dead.status_code == 401
        assert 'error="invalid_token"' in dead.headers["WWW-Authenticate"]
        assert refresh(http, idp, second["refresh_token"]).json()["error"] == "invalid_grant"
        assert idp.invalid_grant == 2
        assert refresh(http, idp, other["refresh_token"]).status_code == 200  # other login


def test_revoke_and_revoke_all(idp, http):
    """revoke() kills one refresh token, revoke_all() every one."""
    one, two, three = (idp.issue_tokens() for _ in range(3))
    idp.revoke(one["refresh_token"])
    idp.revoke("unknown")
    assert refresh(http, idp, one["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(http, idp, two["refresh_token"]).status_code == 200
    idp.revoke_all()
    assert refresh(http, idp, three["refresh_token"]).json()["error"] == "invalid_grant"


def test_concurrent_refreshes_of_one_token_yield_one_success(idp):
    """Eight threads racing with one refresh token produce exactly one new pair."""
    token = idp.issue_tokens()["refresh_token"]
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def worker() -> None:
        with requests.Session() as session:
            barrier.wait(timeout=5)
            statuses.append(refresh(session, idp, token).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(statuses) == [200] + [400] * 7
    assert (idp.refresh_calls, idp.invalid_grant) == (1, 7)


@pytest.mark.parametrize("method", ["basic", "post"])
def test_client_credentials_auth_methods(idp, http, method):
    """client_credentials works with client_secret_basic and client_secret_post."""
    form = {"grant_type": "client_credentials", "scope": "api", "audience": "svc"}
    if method == "basic":
        response = http.post(idp.token_url, data=form, auth=("confidential", SECRET))
    else:
        form |= {"client_id": "confidential", "client_secret": SECRET}
        response = http.post(idp.token_url, data=form)
    assert response.status_code == 200
    answer = response.json()
    assert "refresh_token" not in answer
    claims = claims_of(answer["access_token"])
    assert (claims["sub"], claims["scope"], claims["aud"]) == ("confidential", "api", "svc")
    assert idp.client_credentials_calls == 1
    recorded = idp.token_requests[-1]
    assert recorded["_client_id"] == "confidential"
    assert recorded["_auth_method"] == f"client_secret_{method}"


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("confidential", "wrong"), {}),
        (("stranger", SECRET), {}),
        (None, {"client_id": "confidential"}),
        (None, {"client_id": "confidential", "client_secret": "wrong"}),
        (None, {}),
    ],
)
def test_invalid_client_is_401_with_basic_challenge(idp, http, auth, form):
    """Unknown clients, wrong or missing secrets answer 401 invalid_client."""
    form = {"grant_type": "client_credentials", **form}
    response = http.post(idp.token_url, data=form, auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_public_client_cannot_use_client_credentials(idp, http):
    """A public client gets unauthorized_client for client_credentials."""
    response = http.post(
        idp.token_url, data={"grant_type": "client_credentials", "client_id": "cli"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert idp.token_requests[-1]["_auth_method"] == "none"


def test_basic_credentials_are_form_urldecoded(http):
    """Basic credentials are decoded as RFC 6749 2.3.1 form-encoded values."""
    with LocalIdP(clients={"a b": "p+w:d"}) as idp:
        raw = base64.b64encode(b"a+b:p%2Bw%3Ad").decode()
        form = {"grant_type": "client_credentials"}
        response = http.post(idp.token_url, data=form, headers={"Authorization": f"Basic {raw}"})
        assert response.status_code == 200


def test_password_grant_and_unsupported_grant(idp, http):
    """The password grant returns a pair; unknown grant types are rejected."""
    form = {"grant_type": "password", "client_id": "cli", "username": "ann", "password": "x"}
    answer = http.post(idp.token_url, data=form).json()
    assert claims_of(answer["access_token"])["sub"] == "ann"
    assert "refresh_token" in answer
    empty = http.post(idp.token_url, data={**form, "password": ""})
    assert empty.json()["error"] == "invalid_grant"
    other = http.post(idp.token_url, data={"grant_type": "magic", "client_id": "cli"})
    assert (other.status_code, other.json()["error"]) == (400, "unsupported_grant_type")


def test_jwt_bearer_grant(idp, http):
    """A valid access token as assertion yields a new access token for the same subject."""
    subject = idp.issue_tokens(subject="alice", scope="read")["access_token"]
    form = {"grant_type": testing.GRANT_JWT_BEARER, "client_id": "cli", "assertion": subject}
    answer = http.post(idp.token_url, data=form).json()
    assert "refresh_token" not in answer
    claims = claims_of(answer["access_token"])
    assert (claims["sub"], claims["scope"], claims["client_id"]) == ("alice", "read", "cli")
    bad = http.post(idp.token_url, data={**form, "assertion": "garbage"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")
    assert idp.jwt_bearer_calls == 1


def test_jwt_bearer_rejects_expired_assertion(http):
    """An expired assertion is invalid_grant."""
    clock = FakeClock()
    with LocalIdP(clock=clock) as idp:
        assertion = idp.issue_tokens()["access_token"]
        clock.now += 61
        form = {"grant_type": testing.GRANT_JWT_BEARER, "client_id": "cli", "assertion": assertion}
        assert http.post(idp.token_url, data=form).json()["error"] == "invalid_grant"
        assert idp.invalid_grant == 1


def test_token_exchange_grant(idp, http):
    """Token exchange honours audience, resource, scope and requested_token_type."""
    subject = idp.issue_tokens(subject="bob", scope="read write")["access_token"]
    form = {
        "grant_type": testing.GRANT_TOKEN_EXCHANGE,
        "client_id": "confidential",
        "client_secret": SECRET,
        "subject_token": subject,
        "subject_token_type": ACCESS_TYPE,
        "audience": "orders",
        "resource": "https://api.example/orders",
        "scope": "read",
        "requested_token_type": testing.TYPE_JWT,
    }
    answer = http.post(idp.token_url, data=form).json()
    assert answer["issued_token_type"] == testing.TYPE_JWT
    assert answer["token_type"] == "Bearer"
    claims = claims_of(answer["access_token"])
    assert claims["sub"] == "bob"
    assert claims["aud"] == ["orders", "https://api.example/orders"]
    assert claims["scope"] == "read"
    assert idp.token_exchange_calls == 1
    wrong_type = http.post(idp.token_url, data={**form, "subject_token_type": "urn:x"})
    assert wrong_type.json()["error"] == "invalid_request"
    invalid = http.post(idp.token_url, data={**form, "subject_token": "garbage"})
    assert (invalid.status_code, invalid.json()["error"]) == (400, "invalid_grant")


def test_token_requests_record_forms_and_auth_method(idp, http):
    """Every token call is recorded with the resolved client and auth method."""
    tokens = idp.issue_tokens()
    refresh(http, idp, tokens["refresh_token"])
    assert idp.token_requests == [
        {
            "grant_type": "refresh_token",
            "client_id": "cli",
            "refresh_token": tokens["refresh_token"],
            "_client_id": "cli",
            "_auth_method": "none",
        }
    ]


def chunks() -> Iterator[bytes]:
    yield b"hello "
    yield b""
    yield b"chunked " * 1000
    yield b"world"


@pytest.mark.parametrize("kind", ["bytes", "generator"])
def test_post_body_length_and_sha256(idp, http, kind):
    """POST bodies, Content-Length or chunked, are read whole and hashed."""
    payload = b"".join(chunks())
    body = payload if kind == "bytes" else chunks()
    token = idp.issue_tokens()["access_token"]
    response = http.post(idp.resource_url + "/upload", data=body, headers=bearer(token))
    assert response.json() == {
        "ok": True,
        "sub": "user",
        "path": "/resource/upload",
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    # The same keep-alive connection still works after the body was consumed.
    assert http.get(idp.resource_url, headers=bearer(token)).json()["path"] == "/resource"
    record = idp.resource_requests[0]
    assert record["length"] == len(payload)
    assert record["authorization"] is True
    assert token not in repr(idp.resource_requests)


def test_missing_token_is_401_with_realm_only(idp, http):
    """Without a bearer token the resource answers 401 without an error code."""
    response = http.get(idp.resource_url)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="local"'
    assert (idp.resource_calls, idp.unauthorized) == (1, 1)
    assert idp.resource_requests[0]["authorization"] is False


def test_expired_token_is_401_invalid_token():
    """An access token past exp on the injected clock is rejected."""
    clock = FakeClock()
    with LocalIdP(clock=clock, access_token_lifetime=30) as idp, requests.Session() as http:
        token = idp.issue_tokens()["access_token"]
        assert claims_of(token)["exp"] == clock.now + 30
        assert http.get(idp.resource_url, headers=bearer(token)).ok
        clock.now += 30
        response = http.get(idp.resource_url, headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        assert "expired" in response.json()["error_description"]
        assert idp.unauthorized == 1


def test_without_expires_in_clients_must_read_exp(http):
    """include_expires_in=False omits expires_in from every answer."""
    with LocalIdP(include_expires_in=False) as idp:
        tokens = idp.issue_tokens()
        assert "expires_in" not in tokens
        assert "expires_in" not in refresh(http, idp, tokens["refresh_token"]).json()


def test_admin_requires_admin_scope(idp, http):
    """/resource/admin answers 403 insufficient_scope unless the scope has admin."""
    reader = idp.issue_tokens(scope="read")["access_token"]
    response = http.get(idp.resource_url + "/admin", headers=bearer(reader))
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == 'Bearer error="insufficient_scope", scope="admin"'
    admin = idp.issue_tokens(scope="read admin")["access_token"]
    assert http.get(idp.resource_url + "/admin", headers=bearer(admin)).ok


def test_forbidden_path(idp, http):
    """/forbidden is a plain 403 when authenticated and 401 otherwise."""
    token = idp.issue_tokens()["access_token"]
    response = http.get(idp.url + "/forbidden", headers=bearer(token))
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert http.get(idp.url + "/forbidden").status_code == 401


def test_flaky503_redirect_and_status_paths(idp, http):
    """Helper paths: flaky503 recovers after n calls, redirect and status answer as told."""
    token = idp.issue_tokens()["access_token"]
    flaky = idp.url + "/flaky503?n=2&id=a"
    codes = [http.get(flaky, headers=bearer(token)).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert http.get(idp.url + "/flaky503?n=1&id=b").status_code == 401
    target = idp.url + "/status/418"
    redirected = http.get(f"{idp.url}/redirect?to={target}")
    assert redirected.status_code == 418
    assert redirected.history[0].status_code == 302
    assert redirected.json() == {}
    limited = http.get(idp.url + "/status/429?retry_after=3")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert http.get(idp.url + "/nowhere").status_code == 404
    assert idp.resource_calls == 4


def test_rotate_signing_key_invalidates_access_tokens(idp, http):
    """After rotate_signing_key, old unexpired access tokens get 401 invalid_token."""
    old = idp.issue_tokens()["access_token"]
    idp.rotate_signing_key()
    response = http.get(idp.resource_url, headers=bearer(old))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert http.get(idp.resource_url, headers=bearer(idp.issue_tokens()["access_token"])).ok


def test_rs256_tokens_verify_with_published_jwk(http):
    """In RS256 mode the JWKS publishes the key that verifies issued tokens."""
    with LocalIdP(algorithm="RS256") as idp:
        token = idp.issue_tokens(scope="read")["access_token"]
        assert http.get(idp.resource_url, headers=bearer(token)).ok
        keys = http.get(http.get(idp.discovery_url).json()["jwks_uri"]).json()["keys"]
        assert len(keys) == 1
        public = jwt.PyJWK(keys[0])
        claims = jwt.decode(token, public.key, algorithms=["RS256"], options={"verify_exp": False})
        assert claims["iss"] == idp.issuer
        assert jwt.get_unverified_header(token)["kid"] == keys[0]["kid"]


def test_hs256_publishes_empty_jwks(idp, http):
    """In HS256 mode the JWKS is empty."""
    assert http.get(idp.jwks_url).json() == {"keys": []}


def test_discovery_document_and_overrides(http):
    """Both well-known paths serve the metadata; overrides are merged, None removes."""
    with LocalIdP(issuer_path="/o") as idp:
        assert idp.issuer == idp.url + "/o"
        document = http.get(idp.discovery_url)
        assert document.headers["Cache-Control"] == "max-age=3600"
        body = document.json()
        assert body["issuer"] == idp.issuer
        assert body["token_endpoint"] == idp.token_url
        assert body["jwks_uri"] == idp.issuer + "/jwks"
        assert "refresh_token" in body["grant_types_supported"]
        rfc8414 = http.get(idp.url + "/.well-known/oauth-authorization-server/o").json()
        assert rfc8414 == http.get(idp.issuer + "/.well-known/oauth-authorization-server").json()
        idp.discovery_overrides.update(issuer="https://evil.example", token_endpoint=None)
        changed = http.get(idp.discovery_url).json()
        assert changed["issuer"] == "https://evil.example"
        assert "token_endpoint" not in changed
        assert idp.discovery_calls == 4


def test_fail_next_json_statuses(idp, http):
    """500/503/429 faults answer JSON errors, then the endpoint recovers."""
    idp.fail_next(1, "500")
    idp.fail_next(1, "503")
    idp.fail_next(1, "429")
    tokens = idp.issue_tokens()
    answers = [refresh(http, idp, tokens["refresh_token"]) for _ in range(4)]
    assert [r.status_code for r in answers] == [500, 503, 429, 200]
    assert answers[0].json() == {"error": "server_error"}
    assert idp.token_calls == 4
    assert idp.refresh_calls == 1


@pytest.mark.parametrize(
    ("mode", "content_type", "body"),
    [
        ("html", "text/html; charset=utf-8", "<html>Proxy error</html>"),
        ("no_access_token", "application/json", '{"token_type": "Bearer"}'),
        ("invalid_json", "application/json", None),
    ],
)
def test_fail_next_bad_success_answers(idp, http, mode, content_type, body):
    """html, no_access_token and invalid_json faults answer 200 with an unusable body."""
    idp.fail_next(mode=mode)
    response = refresh(http, idp, idp.issue_tokens()["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    if body is not None:
        assert response.text == body
    else:
        with pytest.raises(requests.JSONDecodeError):
            response.json()


def test_fail_next_reset_drops_the_connection(idp, http):
    """The reset fault aborts the connection without an answer."""
    idp.fail_next(mode="reset")
    tokens = idp.issue_tokens()
    with pytest.raises(requests.ConnectionError):
        refresh(http, idp, tokens["refresh_token"])
    assert refresh(http, idp, tokens["refresh_token"]).status_code == 200


def test_fail_next_hang_outlives_client_timeout(idp, http):
    """The hang fault answers nothing, so the client times out."""
    idp.hang_seconds = 0.5
    idp.fail_next(mode="hang")
    form = {"grant_type": "password", "client_id": "cli", "username": "u", "password": "p"}
    with pytest.raises(requests.ReadTimeout):
        http.post(idp.token_url, data=form, timeout=0.2)
    assert http.post(idp.token_url, data=form, timeout=5).status_code == 200


def test_fail_next_discovery_and_resource(idp, http):
    """Faults can target the discovery document and the protected resource."""
    idp.fail_next(2, "503", endpoint="discovery")
    idp.fail_next(1, "500", endpoint="resource")
    assert [http.get(idp.discovery_url).status_code for _ in range(3)] == [503, 503, 200]
    token = idp.issue_tokens()["access_token"]
    assert http.get(idp.resource_url, headers=bearer(token)).status_code == 500
    assert http.get(idp.resource_url, headers=bearer(token)).ok


def test_fail_next_rejects_unknown_mode_and_endpoint(idp):
    """fail_next validates its arguments."""
    with pytest.raises(ValueError, match="mode"):
        idp.fail_next(mode="teapot")
    with pytest.raises(ValueError, match="endpoint"):
        idp.fail_next(endpoint="jwks")


def test_reset_counters(idp, http):
    """reset_counters zeroes the counters and clears the request logs."""
    refresh(http, idp, idp.issue_tokens()["refresh_token"])
    http.get(idp.resource_url)
    idp.reset_counters()
    assert set(idp.counters().values()) == {0}
    assert idp.token_requests == []
    assert idp.resource_requests == []


def test_token_latency_delays_answers(http):
    """token_latency delays the token endpoint by at least that long."""
    with LocalIdP(token_latency=0.05) as idp:
        response = refresh(http, idp, idp.issue_tokens()["refresh_token"])
        assert response.ok
        assert response.elapsed.total_seconds() >= 0.05


def test_constructor_rejects_bad_arguments():
    """Unknown algorithm, reuse policy or issuer path raise ValueError."""
    with pytest.raises(ValueError, match="algorithm"):
        LocalIdP(algorithm="none")
    with pytest.raises(ValueError, match="reuse_policy"):
        LocalIdP(reuse_policy="lenient")
    with pytest.raises(ValueError, match="issuer_path"):
        LocalIdP(issuer_path="o")


def test_stop_is_idempotent_and_closes_keepalive_connections(http):
    """stop() closes idle keep-alive connections and can be called twice."""
    idp = LocalIdP().start()
    url = idp.url
    assert http.get(idp.url + "/status/200").ok  # leaves a pooled keep-alive connection
    idp.stop()
    idp.stop()
    with pytest.raises(RuntimeError):
        _ = idp.url
    with pytest.raises(requests.ConnectionError):
        http.get(url + "/status/200", timeout=5)


def test_issue_tokens_needs_a_started_server_and_known_client():
    """issue_tokens refuses unknown clients and a stopped server."""
    idp = LocalIdP()
    with pytest.raises(ValueError, match="client_id"):
        idp.issue_tokens("stranger")
    with pytest.raises(RuntimeError):
        idp.issue_tokens()


@pytest.mark.parametrize("local_idp", [{"algorithm": "RS256"}], indirect=True)
def test_shipped_fixture_accepts_indirect_parameters(local_idp, http):
    """The local_idp fixture yields a started server configured by indirect params."""
    assert local_idp.algorithm == "RS256"
    token = local_idp.issue_tokens()["access_token"]
    assert http.get(local_idp.resource_url, headers=bearer(token)).ok


def test_bad_chunked_framing_is_400(idp):
    """A malformed chunk size line answers 400 and closes the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", int(idp.url.rsplit(":", 1)[1])), 5) as sock:
        sock.sendall(
            b"POST /resource HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in reply
