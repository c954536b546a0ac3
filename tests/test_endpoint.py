"""OAuthClient: the form it posts and how it classifies the answers (RFC 6749 §5)."""

from __future__ import annotations

import base64
import pickle
from urllib.parse import parse_qs

import pytest
import requests
import responses

from requests_tokenrotate import (
    ClientCredentialsGrant,
    InvalidConfiguration,
    NotLoggedIn,
    OAuthClient,
    RefreshError,
    RefreshTokenGrant,
    Token,
    TokenInvalidated,
)

URL = "https://idp.example.com/token"
SECRET = "client-secret-value"


def form(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@responses.activate
def test_client_secret_basic_sends_basic_auth_and_no_secret_in_form():
    """client_secret_basic puts the credentials in the Authorization header."""
    responses.post(URL, json={"access_token": "a", "expires_in": 60})
    client = OAuthClient(token_url=URL, client_id="app", client_secret=SECRET)
    client.request_token({"grant_type": "client_credentials"})
    call = responses.calls[0]
    expected = base64.b64encode(f"app:{SECRET}".encode()).decode()
    assert call.request.headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in form(call)


@responses.activate
def test_client_secret_post_and_public_clients_use_the_form():
    """client_secret_post sends id and secret in the form; 'none' sends only the id."""
    responses.post(URL, json={"access_token": "a"})
    OAuthClient(
        token_url=URL, client_id="app", client_secret=SECRET, auth_method="client_secret_post"
    ).request_token({"grant_type": "client_credentials"})
    OAuthClient(token_url=URL, client_id="cli").request_token({"grant_type": "client_credentials"})
    assert form(responses.calls[0]) == {
        "grant_type": "client_credentials",
        "client_id": "app",
        "client_secret": SECRET,
    }
    assert form(responses.calls[1]) == {"grant_type": "client_credentials", "client_id": "cli"}
    assert "Authorization" not in responses.calls[1].request.headers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": "x"},
        {"token_url": URL, "client_id": ""},
        {"token_url": URL, "client_id": "x", "auth_method": "private_key_jwt"},
        {"token_url": URL, "client_id": "x", "auth_method": "client_secret_post"},
    ],
)
def test_bad_configuration_is_a_value_error(kwargs):
    """Missing endpoint, client id, or secret for the method is InvalidConfiguration."""
    with pytest.raises(InvalidConfiguration):
        OAuthClient(**kwargs)
    with pytest.raises(ValueError):  # noqa: PT011  # also a builtin ValueError
        OAuthClient(**kwargs)


@responses.activate
def test_refresh_grant_posts_refresh_token_and_keeps_it_if_not_rotated():
    """RefreshTokenGrant sends the refresh token; no new one in the answer keeps the old."""
    responses.post(URL, json={"access_token": "new", "expires_in": 60, "scope": "a b"})
    grant = RefreshTokenGrant(OAuthClient(token_url=URL, client_id="cli"), scope="a")
    token = grant(Token("old", refresh_token="r1"))
    assert form(responses.calls[0]) == {
        "grant_type": "refresh_token",
        "refresh_token": "r1",
        "scope": "a",
        "client_id": "cli",
    }
    assert token.access_token == "new"
    assert token.refresh_token == "r1"
    assert token.scope == "a b"


def test_refresh_grant_without_a_refresh_token_is_not_logged_in():
    """No stored token, or none with a refresh token, is NotLoggedIn (no network)."""
    grant = RefreshTokenGrant(OAuthClient(token_url=URL, client_id="cli"))
    with pytest.raises(NotLoggedIn):
        grant(None)
    with pytest.raises(NotLoggedIn):
        grant(Token("a"))


@responses.activate
def test_client_credentials_grant_fields():
    """ClientCredentialsGrant sends scope, audience and resource when given."""
    responses.post(URL, json={"access_token": "a"})
    client = OAuthClient(token_url=URL, client_id="svc", client_secret=SECRET)
    ClientCredentialsGrant(client, scope="read", audience="api", resource="https://api")(None)
    assert form(responses.calls[0]) == {
        "grant_type": "client_credentials",
        "scope": "read",
        "audience": "api",
        "resource": "https://api",
    }


@pytest.mark.parametrize("status", [400, 401])
@responses.activate
def test_invalid_grant_means_the_credential_is_dead(status):
    """invalid_grant on 400 or 401 is TokenInvalidated, with the OAuth code in the message."""
    responses.post(URL, status=status, json={"error": "invalid_grant", "error_description": "used"})
    with pytest.raises(TokenInvalidated, match="invalid_grant") as info:
        OAuthClient(token_url=URL, client_id="cli").request_token({"grant_type": "refresh_token"})
    assert info.value.invalidated_at is not None


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client", "invalid_scope"])
@responses.activate
def test_client_errors_are_configuration_errors(error):
    """invalid_client and friends are InvalidConfiguration, never a stamp."""
    responses.post(URL, status=401, json={"error": error})
    with pytest.raises(InvalidConfiguration, match=error):
        OAuthClient(token_url=URL, client_id="cli").request_token({"grant_type": "refresh_token"})


@pytest.mark.parametrize(
    ("status", "kwargs", "match"),
    [
        (500, {"json": {"error": "server_error"}}, "500"),
        (503, {"body": "Service Unavailable"}, "503"),
        (429, {"json": {"error": "slow_down"}}, "429"),
        (200, {"body": "<html>Proxy login</html>", "content_type": "text/html"}, "text/html"),
        (200, {"body": '{"access_token": NaN}'}, "not a JSON object"),
        (200, {"json": {"token_type": "Bearer"}}, "no access_token"),
        (200, {"json": {"access_token": 7}}, "no access_token"),
        (200, {"body": "[" * 50000}, "not a JSON object"),
        (502, {"body": "<html>Bad gateway</html>", "content_type": "text/html"}, "502"),
        (403, {"body": "<html>Forbidden by proxy</html>"}, "proxy"),
    ],
)
@responses.activate
def test_transient_and_garbled_answers_are_refresh_errors(status, kwargs, match):
    """5xx, 429, HTML pages, non-JSON and bodies without access_token are RefreshError."""
    responses.post(URL, status=status, **kwargs)
    with pytest.raises(RefreshError, match=match) as info:
        OAuthClient(token_url=URL, client_id="cli").request_token({"grant_type": "refresh_token"})
    assert info.value.status_code == status
    assert info.value.__cause__ is None  # no decoder error carrying the body


@pytest.mark.parametrize(
    ("exc", "match"),
    [(requests.ConnectTimeout("x"), "timed out"), (requests.ConnectionError("x"), "sent")],
)
@responses.activate
def test_network_failures_are_refresh_errors(exc, match):
    """Timeouts and connection errors are RefreshError, not a requests exception."""
    responses.post(URL, body=exc)
    client = OAuthClient(token_url=URL, client_id="cli", sleep=lambda _: None)
    with pytest.raises(RefreshError, match=match) as info:
        client.request_token({"grant_type": "refresh_token", "refresh_token": "r"})
    assert info.value.__context__ is None
    # A connect timeout never reached the server: repeated. Anything else may have: not.
    assert len(responses.calls) == (3 if isinstance(exc, requests.ConnectTimeout) else 1)


@responses.activate
def test_redirects_are_not_followed():
    """A token endpoint that redirects is an error; the grant is not re-posted elsewhere."""
    responses.post(URL, status=307, headers={"Location": "https://evil.example.com/token"})
    with pytest.raises(RefreshError, match="307"):
        OAuthClient(token_url=URL, client_id="cli").request_token({"grant_type": "refresh_token"})
    assert len(responses.calls) == 1


@responses.activate
def test_errors_never_contain_secrets():
    """Messages and reprs carry neither the client secret nor the refresh token."""
    responses.post(URL, status=400, json={"error": "invalid_grant"})
    client = OAuthClient(token_url=URL, client_id="app", client_secret=SECRET)
    assert SECRET not in repr(client)
    with pytest.raises(TokenInvalidated) as info:
        RefreshTokenGrant(client)(Token("a", refresh_token="refresh-secret-value"))
    text = str(info.value) + repr(info.value)
    assert SECRET not in text
    assert "refresh-secret-value" not in text


def test_errors_pickle_with_their_fields():
    """Errors survive a pickle round trip (multiprocessing) with their attributes."""
    error = RefreshError("boom", status_code=503, error="x", key="k", hint="run login")
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.status_code, clone.key, str(clone)) == (
        RefreshError,
        503,
        "k",
        str(error),
    )
    dead = pickle.loads(pickle.dumps(TokenInvalidated("dead", key="k", invalidated_at=5.0)))
    assert dead.invalidated_at == 5.0
    assert isinstance(dead, requests.RequestException)


@responses.activate
def test_basic_credentials_are_form_urlencoded_first():
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding."""
    responses.post(URL, json={"access_token": "a"})
    OAuthClient(token_url=URL, client_id="app:1", client_secret="a+b %c/é").request_token(
        {"grant_type": "client_credentials"}
    )
    header = responses.calls[0].request.headers["Authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "app%3A1:a%2Bb+%25c%2F%C3%A9"


@pytest.mark.parametrize("url", ["http://idp.example.com/token", "ftp://idp/token", "/token"])
def test_token_url_must_be_https_unless_loopback(url):
    """A plain-http token endpoint off loopback is refused (RFC 6749 §3.2)."""
    with pytest.raises(InvalidConfiguration, match="token_url"):
        OAuthClient(token_url=url, client_id="cli")
    assert OAuthClient(token_url="http://127.0.0.1:8080/token", client_id="cli").token_url
