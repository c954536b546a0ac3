"""The transport's behaviour, end to end over loopback, for the adapter and the auth alike.

Every test runs twice through the ``wire`` fixture: once with a session that
mounts a TokenRotateAdapter, once with one whose ``auth`` is a TokenRotateAuth.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
import uuid

import pytest
import requests
import responses
from helpers.challenge_server import ChallengeServer
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import requests_tokenrotate as rt
from requests_tokenrotate._token import _rebuild
from requests_tokenrotate._transport import DEFAULT_COOLDOWN
from requests_tokenrotate.testing import LocalIdP

#: How long a test thread may take before the test calls it stuck (not a sleep).
JOIN_TIMEOUT = 30.0


@pytest.fixture(params=["adapter", "auth"])
def wire(request):
    """Build a session that sends a source's token through the adapter or through the auth.

    ``wire(source, prefix, pool={...}, **options)``: the adapter is mounted at
    ``prefix`` (its allowed origin unless ``origins=`` is given); the auth is
    the session's ``auth`` (allowed origin: ``prefix``'s unless ``origins=`` is
    given), with a plain HTTPAdapter at ``prefix`` when
    ``pool`` options (pool sizes, ``max_retries``) are given.
    """
    kind = request.param
    sessions = []

    def build(source, prefix, *, pool=None, **options):
        session = requests.Session()
        sessions.append(session)
        if kind == "adapter":
            rt.mount(session, prefix, source, **(pool or {}), **options)
        else:
            if pool:
                session.mount(prefix, HTTPAdapter(**pool))
            options.setdefault("origins", prefix)
            session.auth = rt.TokenRotateAuth(source, **options)
        return session

    build.kind = kind
    yield build
    for session in sessions:
        session.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- reactive: the server says the token is stale ---------------------------------
def test_401_refreshes_once_and_retries_once(wire, clocked_idp, make_source):
    """A 401 for a token the client thinks valid: one refresh, one retry, a 200."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    idp.rotate_signing_key()
    response = session.get(idp.resource_url)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert idp.refresh_calls == 1
    assert [r["status"] for r in idp.resource_requests] == [401, 200]


@pytest.mark.parametrize(
    "challenge",
    [
        'Bearer error="invalid_token"',
        'Bearer realm="api",error="invalid_token",error_description="The access token is invalid."',
        'Basic realm="proxy", Bearer error="invalid_token"',
    ],
)
def test_403_invalid_token_refreshes(wire, clocked_idp, make_source, challenge):
    """A 403 whose Bearer challenge says invalid_token counts as stale (RFC 6750 §3.1)."""
    source = make_source(clocked_idp)
    stale = f"Bearer {source.token().access_token}"
    accept = lambda headers: headers.get("authorization", stale) != stale  # noqa: E731
    with ChallengeServer(accept, status=403, challenge=challenge) as server:
        response = wire(source, server.url).get(server.url + "/thing")
        assert response.status_code == 200
        assert [r["status"] for r in server.requests] == [403, 200]
    assert clocked_idp.refresh_calls == 1


def test_403_insufficient_scope_never_refreshes(wire, clocked_idp, make_source):
    """insufficient_scope means a new token would not help: no refresh, no retry."""
    idp = clocked_idp
    response = wire(make_source(idp), idp.url).get(idp.url + "/resource/admin")
    assert response.status_code == 403
    assert response.history == []
    assert idp.refresh_calls == 0
    assert len(idp.resource_requests) == 1


def test_bare_403_refreshes_at_most_once_per_cooldown(wire, clocked_idp, make_source, clock):
    """A 403 without a Bearer error on every request spends one refresh per cooldown."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    clock.advance(DEFAULT_COOLDOWN + 60)  # the logged-in token is older than the cooldown
    statuses = [session.get(idp.url + "/forbidden").status_code for _ in range(6)]
    assert statuses == [403] * 6
    assert idp.refresh_calls == 1
    assert len(idp.resource_requests) == 7  # one retry, after the one refresh
    clock.advance(DEFAULT_COOLDOWN + 1)
    statuses = [session.get(idp.url + "/forbidden").status_code for _ in range(6)]
    assert statuses == [403] * 6
    assert idp.refresh_calls == 2


def test_bare_403_on_a_young_token_does_not_refresh(wire, clocked_idp, make_source):
    """A token obtained within the cooldown is not refreshed on a bare 403."""
    idp = clocked_idp
    assert wire(make_source(idp), idp.url).get(idp.url + "/forbidden").status_code == 403
    assert idp.refresh_calls == 0


def test_bare_403_is_not_stale_when_refresh_on_excludes_it(wire, clocked_idp, make_source, clock):
    """refresh_on=(401,) leaves every 403 alone."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url, refresh_on=(401,))
    clock.advance(DEFAULT_COOLDOWN + 60)
    assert session.get(idp.url + "/forbidden").status_code == 403
    assert idp.refresh_calls == 0


def test_second_401_is_returned_without_a_loop(wire, clocked_idp, make_source, caplog):
    """A 401 after the refresh is returned as it is: exactly two requests reach the server."""
    caplog.set_level(logging.DEBUG, logger="requests_tokenrotate")
    with ChallengeServer(lambda headers: False) as server:
        response = wire(make_source(clocked_idp), server.url).get(server.url + "/always401")
        assert response.status_code == 401
        assert [r.status_code for r in response.history] == [401]
        assert len(server.requests) == 2
    assert clocked_idp.refresh_calls == 1
    assert "again after the refresh" in caplog.text


def test_401_from_a_request_without_our_token_spends_no_refresh(wire, clocked_idp, make_source):
    """Only a response to a request that carried our token can trigger a refresh."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url, origins=["http://127.0.0.1:9"])
    assert session.get(idp.resource_url).status_code == 401
    assert idp.refresh_calls == 0
    assert idp.resource_requests[0]["authorization"] is False


def test_cookies_set_by_the_401_are_sent_with_the_retry(wire, clocked_idp, make_source):
    """The retry keeps cookies, as HTTPDigestAuth's does."""
    source = make_source(clocked_idp)
    stale = f"Bearer {source.token().access_token}"
    accept = lambda headers: headers.get("authorization", stale) != stale  # noqa: E731
    with ChallengeServer(accept, set_cookie="affinity=node7; Path=/") as server:
        response = wire(source, server.url).get(server.url + "/thing")
        assert response.status_code == 200
        assert server.requests[1]["headers"].get("cookie") == "affinity=node7"


# -- bodies --------------------------------------------------------------------------
PAYLOAD = bytes(range(256)) * 256  # 64 KiB


def body_of_kind(kind, tmp_path):
    """(data to pass to requests, the bytes the server must get)."""
    if kind == "bytes":
        return PAYLOAD, PAYLOAD
    if kind == "str":
        text = "päyload " * 1000
        return text, text.encode()
    if kind == "bytesio_mid":
        stream = io.BytesIO(PAYLOAD)
        stream.read(1000)
        return stream, PAYLOAD[1000:]
    path = tmp_path / "upload.bin"
    path.write_bytes(PAYLOAD)
    stream = path.open("rb")
    stream.read(12345)  # the caller starts the upload mid-way
    return stream, PAYLOAD[12345:]


@pytest.mark.parametrize("kind", ["bytes", "str", "bytesio_mid", "file_mid"])
def test_replayable_body_is_resent_identically_after_a_401(
    wire, clocked_idp, make_source, tmp_path, kind
):
    """The retry sends the same bytes; a file read from a mid position rewinds to that position."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    data, expected = body_of_kind(kind, tmp_path)
    idp.rotate_signing_key()
    try:
        response = session.post(idp.resource_url, data=data)
    finally:
        if hasattr(data, "close"):
            data.close()
    assert response.status_code == 200
    assert response.json()["sha256"] == sha(expected)
    assert [(r["status"], r["sha256"]) for r in idp.resource_requests] == [
        (401, sha(expected)),
        (200, sha(expected)),
    ]
    assert idp.refresh_calls == 1


def chunks():
    for _ in range(16):
        yield PAYLOAD[:4096]


def test_generator_body_near_expiry_is_refreshed_before_sending(
    wire, clocked_idp, make_source, clock
):
    """Within the refresh margin a stream gets a new token first; the server sees it once."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    clock.advance(600 - 30)  # 30 s left: inside the 60 s margin, outside the 5 s grace
    response = session.post(idp.resource_url, data=chunks())
    assert response.status_code == 200
    assert idp.refresh_calls == 1
    assert [(r["status"], r["length"]) for r in idp.resource_requests] == [(200, 16 * 4096)]
    assert response.json()["sha256"] == sha(PAYLOAD[:4096] * 16)


def test_generator_body_with_a_fresh_token_is_not_refreshed(wire, clocked_idp, make_source):
    """Far from expiry a stream is sent with the current token."""
    idp = clocked_idp
    response = wire(make_source(idp), idp.url).post(idp.resource_url, data=chunks())
    assert response.status_code == 200
    assert idp.refresh_calls == 0


def test_refresh_margin_can_be_fixed(wire, clocked_idp, make_source, clock):
    """refresh_margin=10 does not refresh a stream 30 s before expiry."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url, refresh_margin=10)
    clock.advance(600 - 30)
    assert session.post(idp.resource_url, data=chunks()).status_code == 200
    assert idp.refresh_calls == 0


def test_generator_body_after_401_returns_it_refreshed_and_not_resent(
    wire, clocked_idp, make_source
):
    """A consumed stream is never resent: the 401 comes back, the token is already new."""
    idp = clocked_idp
    source = make_source(idp)
    session = wire(source, idp.url)
    before = source.token()
    idp.rotate_signing_key()
    response = session.post(idp.resource_url, data=chunks())
    assert response.status_code == 401
    assert idp.refresh_calls == 1
    assert len(idp.resource_requests) == 1
    assert source.token() is not before
    # The caller's own retry with a new stream just works.
    assert session.post(idp.resource_url, data=chunks()).status_code == 200
    assert idp.refresh_calls == 1


# -- errors ----------------------------------------------------------------------------
HINT = "run `mytool login`"


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (lambda idp: idp.fail_next(1, "500"), rt.RefreshError),
        (lambda idp: idp.fail_next(1, "reset"), rt.RefreshError),
        (lambda idp: idp.revoke_all(), rt.TokenInvalidated),
    ],
    ids=["500", "reset", "invalid_grant"],
)
def test_refresh_failure_surfaces_the_typed_error(wire, clocked_idp, make_source, break_it, error):
    """A failing refresh raises the source's error (a RequestException), not a ConnectionError."""
    idp = clocked_idp
    session = wire(make_source(idp, key="acme", hint=HINT), idp.url)
    idp.rotate_signing_key()
    break_it(idp)
    with pytest.raises(error) as caught:
        session.get(idp.resource_url)
    assert isinstance(caught.value, requests.RequestException)
    assert not isinstance(caught.value, requests.ConnectionError)
    assert caught.value.key == "acme"
    assert HINT in str(caught.value)
    assert caught.value.response is not None
    assert caught.value.response.status_code == 401


def test_not_logged_in_fails_before_any_request(wire, clocked_idp, make_source):
    """No stored token: NotLoggedIn at once, nothing sent to the resource or the IdP."""
    idp = clocked_idp
    session = wire(make_source(idp, hint=HINT, login=False), idp.url)
    with pytest.raises(rt.NotLoggedIn, match="log in") as caught:
        session.get(idp.resource_url)
    assert HINT in str(caught.value)
    assert idp.resource_calls == 0
    assert idp.token_calls == 0


def test_expired_token_with_failing_refresh_raises_before_sending(
    wire, clocked_idp, make_source, clock
):
    """A token expired by the local clock is refreshed first; if that fails nothing is sent."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    clock.advance(601)
    idp.fail_next(1, "503")
    with pytest.raises(rt.RefreshError):
        session.get(idp.resource_url)
    assert idp.resource_calls == 0


# -- origins ---------------------------------------------------------------------------
def test_other_port_gets_no_token(wire, clocked_idp, make_source):
    """A second loopback server on another port is another origin: no token."""
    with LocalIdP(clock=clocked_idp._clock) as other:
        # Both servers route to the adapter (prefix "http://127.0.0.1"); only one is allowed.
        session = wire(make_source(clocked_idp), "http://127.0.0.1", origins=[clocked_idp.url])
        assert session.get(other.resource_url).status_code == 401
        assert other.resource_requests[0]["authorization"] is False
        assert session.get(clocked_idp.resource_url).status_code == 200
    assert clocked_idp.refresh_calls == 0


@pytest.mark.parametrize(
    ("header", "scheme"), [("Authorization", "Bearer"), ("X-Authorization", "")]
)
@pytest.mark.parametrize("prefix", ["own", "all"])
def test_cross_origin_redirect_sends_no_token(
    wire, clocked_idp, make_source, header, scheme, prefix
):
    """A redirect to another origin drops the token, also from a custom header."""
    idp = clocked_idp
    with ChallengeServer() as elsewhere:
        mount_at = idp.url if prefix == "own" else "http://127.0.0.1"
        session = wire(make_source(idp), mount_at, origins=[idp.url], header=header, scheme=scheme)
        response = session.get(f"{idp.url}/redirect", params={"to": elsewhere.url + "/x"})
        assert response.status_code == 401  # from elsewhere: not ours to refresh
        assert [r.status_code for r in response.history] == [302]
        seen = elsewhere.requests[0]["headers"]
        assert "authorization" not in seen
        assert "x-authorization" not in seen
    assert idp.refresh_calls == 0


def test_same_origin_redirect_keeps_the_token(wire, clocked_idp, make_source):
    """A redirect within the allowed origin still carries the token."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    response = session.get(f"{idp.url}/redirect", params={"to": idp.resource_url})
    assert response.status_code == 200
    assert idp.resource_requests[0]["authorization"] is True


def test_custom_header_and_bare_token(wire, clocked_idp, make_source):
    """header="X-Authorization", scheme="" sends the bare token in that header."""
    source = make_source(clocked_idp)
    expected = source.token().access_token
    accept = lambda headers: headers.get("x-authorization") == expected  # noqa: E731
    with ChallengeServer(accept) as server:
        session = wire(source, server.url, header="X-Authorization", scheme="")
        assert session.get(server.url + "/x").status_code == 200
        assert "authorization" not in server.requests[0]["headers"]


# -- composition and concurrency ------------------------------------------------------------
def run_bounded(target):
    """Run ``target`` in a thread; fail (instead of hanging) if it does not finish."""
    errors = []

    def guarded():
        try:
            target()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "stuck: the connection pool was exhausted"
    if errors:
        raise errors[0]


def test_stream_401_retries_do_not_exhaust_a_one_connection_pool(wire, clocked_idp, make_source):
    """With stream=True the 401 is released before the retry; 200 rounds on one connection."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url, pool={"pool_maxsize": 1, "pool_block": True})

    def rounds():
        for _ in range(200):
            idp.rotate_signing_key()
            with session.get(idp.resource_url, stream=True) as response:
                assert response.status_code == 200
                assert response.json()["ok"] is True

    run_bounded(rounds)
    assert idp.refresh_calls == 200


def test_urllib3_retry_on_503_still_retries(wire, clocked_idp, make_source):
    """max_retries=Retry(status_forcelist=[503]) composes with the 401 retry."""
    idp = clocked_idp
    retry = Retry(total=3, status_forcelist=[503], backoff_factor=0)
    session = wire(make_source(idp), idp.url, pool={"max_retries": retry})
    url = f"{idp.url}/flaky503"
    response = session.get(url, params={"n": 2, "id": uuid.uuid4().hex})
    assert response.status_code == 200
    assert response.json()["attempt"] == 3
    idp.rotate_signing_key()  # now a 401 first, then two 503s absorbed by urllib3
    response = session.get(url, params={"n": 2, "id": uuid.uuid4().hex})
    assert response.status_code == 200
    assert response.json()["attempt"] == 3
    assert idp.refresh_calls == 1


def test_32_threads_with_an_expired_token_make_one_refresh(wire, clocked_idp, make_source, clock):
    """32 threads on one session, token expired: every request 200, exactly one refresh."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url, pool={"pool_maxsize": 32})
    clock.advance(601)
    barrier = threading.Barrier(32)
    statuses = []

    def worker():
        barrier.wait(JOIN_TIMEOUT)
        with session.get(idp.resource_url) as response:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert statuses == [200] * 32
    assert idp.refresh_calls == 1
    assert idp.unauthorized == 0


def test_redirect_after_the_retry_carries_the_new_token(wire, clocked_idp, make_source):
    """The retried request is updated in place, so a later redirect hop has the new token."""
    source = make_source(clocked_idp)
    stale = f"Bearer {source.token().access_token}"
    accept = lambda headers: headers.get("authorization", stale) != stale  # noqa: E731
    with ChallengeServer(accept, redirects={"/start": "/end"}) as server:
        response = wire(source, server.url).get(server.url + "/start")
        assert response.status_code == 200
        assert [(r["path"], r["status"]) for r in server.requests] == [
            ("/start", 401),
            ("/start", 302),
            ("/end", 200),
        ]
    assert clocked_idp.refresh_calls == 1


# -- shape-level, with `responses` (no network, a fake grant) -------------------------------
API = "https://api.example.com"


@pytest.fixture
def fake_source():
    """A logged-in source whose grant mints tok-2, tok-3, ... without any network."""
    minted = iter(range(2, 1000))

    def grant(stale):
        now = time.time()
        return rt.Token(f"tok-{next(minted)}", expires_at=now + 3600, obtained_at=now)

    source = rt.TokenSource(grant, rt.MemoryTokenStore(), key="fake")
    source.login(rt.Token("tok-1", expires_at=time.time() + 3600, obtained_at=time.time()))
    return source


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(r".*"), callback=lambda r: (200, {}, "{}"))
        yield mock


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com.evil.net/v1",
        "https://api.example.com@evil.net/v1",
        "https://api.example.com:@evil.net/v1",
        "https://api.example.com:8443/v1",
        "http://api.example.com/v1",
        "https://evil.net/https://api.example.com/",
        "https://evil.net/?next=https://api.example.com",
    ],
)
def test_look_alike_hosts_get_no_token(wire, fake_source, mocked, url):
    """String-prefix look-alikes (suffix host, userinfo '@', another port or scheme): no token."""
    # No trailing slash: Session.mount's string prefix matches the look-alikes too.
    session = wire(fake_source, API, origins=[API])
    assert session.get(url).status_code == 200
    assert "tok-1" not in mocked.calls[0].request.headers.get("Authorization", "")


@pytest.mark.parametrize(
    "url", [f"{API}/v1", "https://API.Example.COM:443/v1", f"{API}?q=1", f"{API}:443"]
)
def test_allowed_origin_gets_the_token(wire, fake_source, mocked, url):
    """The same origin in other spellings (case, default port, no path) gets the token."""
    session = wire(fake_source, API, origins=[API])
    session.get(url)
    assert mocked.calls[0].request.headers["Authorization"] == "Bearer tok-1"


@pytest.mark.parametrize(
    "access_token",
    ["abc\r\nX-Evil: 1", "abc\nX-Evil: 1", "abc\x00def", "abc def", "abc\tdef", "\x7fabc", "токен"],
    ids=["crlf", "lf", "nul", "space", "tab", "del", "non-latin-1"],
)
def test_token_unfit_for_a_header_is_rejected_before_sending(
    wire, fake_source, mocked, access_token
):
    """A token that would break the header raises InvalidConfiguration, never quoting it."""
    with pytest.raises(rt.InvalidConfiguration) as refused:  # Token itself refuses it
        rt.Token(access_token, expires_at=time.time() + 3600)
    assert "abc" not in str(refused.value)
    # One built past the constructor (as unpickling does) still never reaches the wire.
    smuggled = _rebuild(rt.Token, {**rt.Token("x").to_dict(), "access_token": access_token})
    fake_source.store.save(fake_source.key, smuggled)
    fake_source = rt.TokenSource(fake_source.grant, fake_source.store, key=fake_source.key)
    session = wire(fake_source, API, origins=[API])
    with pytest.raises(rt.InvalidConfiguration) as caught:
        session.get(f"{API}/v1")
    assert access_token not in str(caught.value)
    assert "abc" not in str(caught.value)
    assert caught.value.key == "fake"
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "N_A", "mac"])
def test_scheme_does_not_depend_on_the_token_type(wire, fake_source, mocked, token_type):
    """The header says "Bearer" (the configured scheme) whatever token_type the server sent."""
    fake_source.login(rt.Token("tok-x", token_type=token_type, expires_at=time.time() + 3600))
    wire(fake_source, API, origins=[API]).get(f"{API}/v1")
    assert mocked.calls[0].request.headers["Authorization"] == "Bearer tok-x"


def test_a_fresh_token_request_logs_nothing(wire, fake_source, mocked, caplog):
    """The hot path does no logging at all, not even at DEBUG."""
    session = wire(fake_source, API, origins=[API])
    session.get(f"{API}/v1")
    caplog.set_level(logging.DEBUG, logger="requests_tokenrotate")
    for _ in range(3):
        session.get(f"{API}/v1")
    assert caplog.records == []
