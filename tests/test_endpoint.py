"""OAuthClient: the form it posts, how it classifies the answers (RFC 6749 §5), and its bounds.

Hostile and failing servers (drip, huge and endless bodies, retries, bare 400s,
echoed secrets) run against a real LocalIdP; shapes use ``responses``.
"""

from __future__ import annotations

import base64
import email.utils
import pickle
import socket
import threading
import time
import tracemalloc
from urllib.parse import parse_qs

import pytest
import requests
import responses

import requests_tokenrotate as rt
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
from requests_tokenrotate._exchange import LOST, NOT_SENT
from requests_tokenrotate._retry import parse_retry_after, retry_delay
from requests_tokenrotate.testing import LocalIdP

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


# -- hostile and failing servers (real LocalIdP) ------------------------------------------------

CONFIDENTIAL = "s3cret-client"


def refresh(idp, client, tokens=None):
    tokens = tokens or idp.issue_tokens()
    return RefreshTokenGrant(client)(
        Token(tokens["access_token"], refresh_token=tokens["refresh_token"])
    )


class Sleeps(list):
    """An injected sleep: records each pause instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.mark.parametrize("endpoint", ["token", "discovery"])
def test_a_dripping_server_is_abandoned_at_the_deadline(idp, tmp_path, endpoint):
    """One byte per 0.1 s never trips a 5 s read timeout; the 0.6 s deadline ends the call."""
    idp.drip_seconds = 0.1  # the 72-byte token answer would take 7 s
    tokens = idp.issue_tokens()
    idp.fail_next(1, "drip", endpoint=endpoint)
    where = {"token_url": idp.token_url} if endpoint == "token" else {"issuer": idp.issuer}
    client = OAuthClient(**where, client_id="cli", timeout=(2, 5), deadline=0.6, cache_dir=tmp_path)
    expected = RefreshError if endpoint == "token" else rt.DiscoveryError
    started = time.monotonic()
    with client, pytest.raises(expected, match="deadline"):
        refresh(idp, client, tokens)
    assert time.monotonic() - started < 1.6  # the deadline plus a generous margin
    assert idp.refresh_calls == 0


def test_a_dripping_server_releases_the_refresh_lock_in_time(idp):
    """A peer queued behind a dripping refresh gets the lock in time, not a LockTimeout."""
    idp.drip_seconds = 0.1
    client = OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 5), deadline=0.5)
    source = rt.TokenSource(RefreshTokenGrant(client), rt.MemoryTokenStore(), lock_timeout=1.5)
    source.login(idp.issue_tokens())
    stale = source.token()
    idp.fail_next(1, "drip")
    outcomes = {}

    def first():
        try:
            source.refresh(stale)
        except RefreshError as exc:
            outcomes["first"] = exc

    with client:
        holder = threading.Thread(target=first)
        holder.start()
        until = time.monotonic() + 5
        while idp.token_calls == 0 and time.monotonic() < until:  # the holder is on the wire
            time.sleep(0.005)
        assert idp.token_calls == 1
        fresh = source.refresh(stale)  # queued on the gate; LockTimeout after 1.5 s
        holder.join(5)
    assert "deadline" in str(outcomes["first"])
    assert fresh.access_token != stale.access_token
    assert idp.refresh_calls == 1


def test_a_huge_answer_is_refused_before_reading_it(idp):
    """A 2 MiB token answer (Content-Length says so) is a RefreshError, nothing parsed."""
    idp.fail_next(1, "huge")
    with (
        OAuthClient(token_url=idp.token_url, client_id="cli") as client,
        pytest.raises(RefreshError, match="1 MiB"),
    ):
        refresh(idp, client)


@pytest.mark.parametrize("endpoint", ["token", "discovery"])
def test_an_endless_answer_costs_bounded_memory(idp, tmp_path, endpoint):
    """A chunked body that never ends stops at 1 MiB read: a typed error, a few MiB of memory."""
    idp.fail_next(1, "endless", endpoint=endpoint)
    where = {"token_url": idp.token_url} if endpoint == "token" else {"issuer": idp.issuer}
    expected = RefreshError if endpoint == "token" else rt.DiscoveryError
    client = OAuthClient(**where, client_id="cli", deadline=20, cache_dir=tmp_path)
    tracemalloc.start()
    try:
        with client, pytest.raises(expected, match="1 MiB"):
            refresh(idp, client)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_a_huge_discovery_document_is_a_discovery_error(idp, tmp_path):
    """Discovery reads at most 1 MiB too."""
    idp.fail_next(1, "huge", endpoint="discovery")
    with OAuthClient(issuer=idp.issuer, client_id="cli", cache_dir=tmp_path) as client:
        with pytest.raises(rt.DiscoveryError, match="1 MiB"):
            client.token_endpoint()
        assert client.token_endpoint() == idp.token_url  # not cached: the next call works


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["503_retry_after", "429_retry_after"])
def test_deferred_refresh_is_retried_after_retry_after(idp, mode):
    """503/429 with Retry-After: the server did nothing; the refresh is repeated once."""
    idp.fail_next(1, mode)
    sleeps = Sleeps()
    with OAuthClient(token_url=idp.token_url, client_id="cli", sleep=sleeps) as client:
        assert refresh(idp, client).access_token
    assert (idp.token_calls, idp.refresh_calls) == (2, 1)
    assert len(sleeps) == 1
    assert 1.0 <= sleeps[0] < 1.1  # Retry-After: 1, plus jitter


def test_retry_after_as_an_http_date(idp):
    """An HTTP-date Retry-After (here in the past) counts too."""
    idp.retry_after = email.utils.formatdate(time.time() - 5, usegmt=True)
    idp.fail_next(1, "503_retry_after")
    sleeps = Sleeps()
    with OAuthClient(token_url=idp.token_url, client_id="cli", sleep=sleeps) as client:
        assert refresh(idp, client).access_token
    assert idp.refresh_calls == 1
    assert 0 <= sleeps[0] < 0.1


def test_retry_after_beyond_the_deadline_is_not_awaited(idp):
    """A Retry-After that does not fit in the time left is a RefreshError at once."""
    idp.retry_after = "60"
    idp.fail_next(1, "503_retry_after")
    sleeps = Sleeps()
    with (
        OAuthClient(token_url=idp.token_url, client_id="cli", sleep=sleeps, deadline=5) as client,
        pytest.raises(RefreshError, match="503"),
    ):
        refresh(idp, client)
    assert (idp.token_calls, sleeps) == (1, [])


@pytest.mark.parametrize("mode", ["500", "503", "reset", "hang"])
def test_a_refresh_that_may_have_rotated_is_never_repeated(idp, mode):
    """500, a 503 without Retry-After, a reset or a read timeout: one call, a RefreshError."""
    idp.hang_seconds = 1.0
    idp.fail_next(1, mode)
    sleeps = Sleeps()
    with (
        OAuthClient(
            token_url=idp.token_url, client_id="cli", timeout=(1, 0.3), sleep=sleeps
        ) as client,
        pytest.raises(RefreshError),
    ):
        refresh(idp, client)
    assert (idp.token_calls, sleeps) == (1, [])


@pytest.mark.parametrize("mode", ["500", "reset", "hang"])
def test_grants_that_spend_nothing_are_repeated(idp, mode):
    """Client credentials repeat a 500, a reset or a read timeout (bounded, with pauses)."""
    idp.hang_seconds = 1.0
    idp.fail_next(1, mode)
    sleeps = Sleeps()
    with OAuthClient(
        token_url=idp.token_url, client_id="confidential", client_secret=CONFIDENTIAL,
        timeout=(1, 0.3), sleep=sleeps,
    ) as client:  # fmt: skip
        assert ClientCredentialsGrant(client)(None).access_token
    assert (idp.token_calls, idp.client_credentials_calls, len(sleeps)) == (2, 1, 1)


def test_retries_are_bounded(idp):
    """Endless 500s for client credentials: max_attempts calls, then a RefreshError."""
    idp.fail_next(10, "500")
    with OAuthClient(
        token_url=idp.token_url, client_id="confidential", client_secret=CONFIDENTIAL,
        sleep=Sleeps(),
    ) as client, pytest.raises(RefreshError, match="500"):  # fmt: skip
        ClientCredentialsGrant(client)(None)
    assert idp.token_calls == 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_is_retried_even_for_a_refresh():
    """Connection refused: the request was never sent, so the refresh is repeated safely."""
    idp = LocalIdP(port=free_port())
    with idp:
        tokens = idp.issue_tokens()
    url = f"http://127.0.0.1:{idp.bind_port}/token"
    started = []

    def sleep(seconds):  # the server comes up during the pause
        started.append(seconds)
        idp.start()

    try:
        with OAuthClient(token_url=url, client_id="cli", sleep=sleep) as client:
            assert refresh(idp, client, tokens).access_token
    finally:
        idp.stop()
    assert (len(started), idp.token_calls, idp.refresh_calls) == (1, 1, 1)


@pytest.mark.parametrize(
    ("rotating", "failure", "status", "retry_after", "expected"),
    [
        (True, NOT_SENT, 0, None, True),
        (True, None, 503, 1.0, True),
        (True, None, 429, 0.0, True),
        (True, None, 503, None, False),
        (True, None, 503, 99.0, False),  # does not fit in the time left
        (True, None, 500, None, False),
        (True, None, 502, 1.0, False),
        (True, None, 504, None, False),
        (True, LOST, 0, None, False),
        (True, "deadline", 0, None, False),
        (True, None, 400, None, False),
        (False, LOST, 0, None, True),
        (False, None, 500, None, True),
        (False, None, 502, None, True),
        (False, None, 400, None, False),
        (False, "too_large", 200, None, False),
    ],
)
def test_retry_rule(rotating, failure, status, retry_after, expected):
    """The retry rule is a pure function of the grant kind and what happened."""
    delay = retry_delay(
        rotating=rotating, failure=failure, status=status, retry_after=retry_after,
        attempt=1, remaining=10.0, jitter=0.5,
    )  # fmt: skip
    assert (delay is not None) == expected
    assert retry_delay(
        rotating=rotating, failure=failure, status=status, retry_after=retry_after,
        attempt=3, remaining=10.0, jitter=0.5,
    ) is None  # fmt: skip


def test_parse_retry_after():
    """Retry-After is delay-seconds or an HTTP-date; anything else is ignored."""
    now = 1_800_000_000.0
    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
    for junk in (None, "", "-1", "1.5", "soon", "Sun, 99 Foo 1994"):
        assert parse_retry_after(junk, now=now) is None


# -- bare 400 -------------------------------------------------------------------------------


def test_a_repeated_bare_400_for_the_same_refresh_token_is_dead(idp):
    """First bare 400: RefreshError (nothing stamped); the same again: TokenInvalidated."""
    store = rt.MemoryTokenStore()
    with OAuthClient(token_url=idp.token_url, client_id="cli") as client:
        source = rt.TokenSource(RefreshTokenGrant(client), store)
        source.login(idp.issue_tokens())
        stale = source.token()
        idp.fail_next(2, "bare_400")
        with pytest.raises(RefreshError, match="if it repeats") as first:
            source.refresh(stale)
        assert first.value.status_code == 400
        assert store.load("default").invalidated_at is None
        with pytest.raises(TokenInvalidated, match="bare 400"):
            source.refresh(stale)
    assert store.load("default").invalidated_at is not None
    assert idp.token_calls == 2


def test_bare_400s_for_different_refresh_tokens_stay_transient(idp):
    """One bare 400 each for two refresh tokens: no verdict; a success in between forgets it."""
    with OAuthClient(token_url=idp.token_url, client_id="cli") as client:
        for _ in range(2):
            idp.fail_next(1, "bare_400")
            with pytest.raises(RefreshError):
                refresh(idp, client)
        tokens = idp.issue_tokens()
        idp.fail_next(1, "bare_400")
        with pytest.raises(RefreshError):
            refresh(idp, client, tokens)
        idp.fail_next(1, "500")
        with pytest.raises(RefreshError, match="500"):
            refresh(idp, client, tokens)
        idp.fail_next(1, "bare_400")  # not twice in a row: the 500 came between
        with pytest.raises(RefreshError, match="if it repeats"):
            refresh(idp, client, tokens)


@responses.activate
def test_a_proxy_html_400_stays_transient():
    """A 400 HTML page (a proxy), however often, never invalidates the refresh token."""
    responses.post(URL, status=400, body="<html>Bad Request</html>", content_type="text/html")
    client = OAuthClient(token_url=URL, client_id="cli")
    for _ in range(3):
        with pytest.raises(RefreshError, match="proxy"):
            RefreshTokenGrant(client)(Token("a", refresh_token="r-1"))


# -- secrets stay out of errors ---------------------------------------------------------------


def chain(error):
    """The error, its cause and context chain, with their requests and responses."""
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def leaks(error, *secrets) -> list[str]:
    found = []
    for item in chain(error):
        texts = [str(item), repr(item), repr(item.args), repr(vars(item))]
        request = getattr(item, "request", None)
        response = getattr(item, "response", None)
        if request is not None or response is not None:
            found.append(f"{type(item).__name__} carries a request/response")
        found += [s for s in secrets for text in texts if s in text]
    return found


@pytest.mark.parametrize("auth_method", ["client_secret_post", "client_secret_basic"])
def test_an_echoing_server_never_puts_a_secret_in_an_error(auth_method):
    """error_description/error_uri quoting the refresh token and secret are redacted."""
    with LocalIdP(clients={"confidential": CONFIDENTIAL}) as idp:
        tokens = idp.issue_tokens("confidential")
        idp.fail_next(1, "echo")
        client = OAuthClient(
            token_url=idp.token_url, client_id="confidential", client_secret=CONFIDENTIAL,
            auth_method=auth_method,
        )  # fmt: skip
        with client, pytest.raises(RefreshError, match="redacted") as info:
            refresh(idp, client, tokens)
    assert leaks(info.value, tokens["refresh_token"], CONFIDENTIAL) == []
    assert "grant_type=refresh_token" in info.value.error_description  # the rest is quoted


@responses.activate
def test_config_errors_carry_no_request_and_no_echo():
    """invalid_client quoting the secret: InvalidConfiguration without it, without .request."""
    responses.post(
        URL, status=401, json={"error": "invalid_client", "error_description": f"bad {SECRET}"}
    )
    client = OAuthClient(
        token_url=URL, client_id="app", client_secret=SECRET, auth_method="client_secret_post"
    )
    with pytest.raises(InvalidConfiguration, match="invalid_client") as info:
        RefreshTokenGrant(client)(Token("a", refresh_token="refresh-secret-value"))
    assert leaks(info.value, SECRET, "refresh-secret-value") == []


@responses.activate
def test_a_truncated_echo_is_withheld():
    """A server that quotes only part of a long credential still gets nothing quoted."""
    assertion = "eyJhbGciOiJIUzI1NiJ9." + "x" * 300
    responses.post(
        URL,
        status=400,
        json={"error": "invalid_request", "error_description": "bad assertion " + assertion[:40]},
    )
    client = OAuthClient(token_url=URL, client_id="cli")
    with pytest.raises(RefreshError, match="withheld") as info:
        client.request_token({"grant_type": "x", "assertion": assertion})
    assert leaks(info.value, assertion[:20]) == []


@pytest.mark.parametrize("exc", [requests.ConnectionError("x"), requests.ReadTimeout("x")])
@responses.activate
def test_network_errors_leave_no_request_in_the_chain(exc):
    """requests' own exception (its .request holds the form) is not the error's context."""
    responses.post(URL, body=exc)
    client = OAuthClient(token_url=URL, client_id="cli", sleep=Sleeps())
    with pytest.raises(RefreshError) as info:
        RefreshTokenGrant(client)(Token("a", refresh_token="refresh-secret-value"))
    assert leaks(info.value, "refresh-secret-value") == []


# -- unusable access tokens and the deadline knob ---------------------------------------------


@pytest.mark.parametrize("access_token", ["has space", "crlf\r\nX: 1", "", "\u0442\u043e\u043a"])
@responses.activate
def test_an_access_token_unfit_for_a_header_saves_nothing(access_token):
    """The answer is a RefreshError; the store keeps the old token and its refresh token."""
    responses.post(URL, json={"access_token": access_token, "refresh_token": "r-2"})
    store = rt.MemoryTokenStore()
    source = rt.TokenSource(RefreshTokenGrant(OAuthClient(token_url=URL, client_id="cli")), store)
    before = source.login(Token("old", refresh_token="r-1", expires_at=1.0))
    with pytest.raises(RefreshError, match="access_token"):
        source.token()
    assert store.load("default") == before


def test_login_refuses_an_access_token_unfit_for_a_header():
    """login(dict) refuses it with a typed error, and the store is untouched."""
    store = rt.MemoryTokenStore()
    source = rt.TokenSource(lambda stale: Token("x"), store)
    with pytest.raises(InvalidConfiguration, match="header"):
        source.login({"access_token": "a b", "refresh_token": "r"})
    assert store.load("default") is None


def test_grants_expose_the_deadline_and_the_source_checks_it():
    """A deadline not below lock_timeout is refused when the TokenSource is built."""
    client = OAuthClient(token_url=URL, client_id="cli", deadline=10)
    grants = [RefreshTokenGrant(client), ClientCredentialsGrant(client)]
    grants += [rt.JWTBearerGrant(client, lambda: "j"), rt.TokenExchangeGrant(client, lambda: "s")]
    for grant in grants:
        assert grant.deadline == 10
        rt.TokenSource(grant, rt.MemoryTokenStore(), lock_timeout=11)
        with pytest.raises(InvalidConfiguration, match="deadline"):
            rt.TokenSource(grant, rt.MemoryTokenStore(), lock_timeout=10)
    assert OAuthClient(token_url=URL, client_id="cli").deadline <= 30
    rt.TokenSource(RefreshTokenGrant(OAuthClient(token_url=URL, client_id="cli")))


@pytest.mark.parametrize("deadline", [0, -1, float("inf"), float("nan"), True, "5"])
def test_bad_deadlines_are_refused(deadline):
    """The deadline is a positive, finite number of seconds."""
    with pytest.raises(InvalidConfiguration, match="deadline"):
        OAuthClient(token_url=URL, client_id="cli", deadline=deadline)
