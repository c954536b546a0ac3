"""The transport matrix, once, against every shell over one TokenSource.

Shells: the requests adapter, the requests auth, the httpx auth on an
``httpx.Client`` and on an ``httpx.AsyncClient``. Each test talks to real
loopback servers (LocalIdP, tests/helpers/challenge_server.py) through a
small :class:`Shell` facade, so one test body checks all four.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading

import httpx
import pytest
import requests
from helpers.challenge_server import ChallengeServer

import requests_tokenrotate as rt
from requests_tokenrotate._policy import DEFAULT_COOLDOWN
from requests_tokenrotate.httpx import TokenRotateAuth as HTTPXAuth
from requests_tokenrotate.testing import LocalIdP

SHELLS = ["requests-adapter", "requests-auth", "httpx-sync", "httpx-async"]
PAYLOAD = bytes(range(256)) * 64  # 16 KiB
CHUNKS = 8
#: Bound on any one call through the async shell's loop thread (not a sleep).
CALL_TIMEOUT = 30.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunks():
    for _ in range(CHUNKS):
        yield PAYLOAD[:2048]


async def achunks():
    for _ in range(CHUNKS):
        yield PAYLOAD[:2048]


STREAMED = PAYLOAD[:2048] * CHUNKS


class Answer:
    """What every shell returns: the status, the statuses in history, the JSON body."""

    def __init__(self, status: int, history: list[int], body: bytes) -> None:
        self.status = status
        self.history = history
        self.body = body


class Shell:
    """One client wired to a source; ``request`` sends and returns an :class:`Answer`."""

    def __init__(self, kind: str, source: rt.TokenSource, allowed: str, **options) -> None:
        self.kind = kind
        self._loop: asyncio.AbstractEventLoop | None = None
        if kind == "requests-adapter":
            self.session = requests.Session()
            # Mounted for every loopback port: the origin check, not the prefix, decides.
            rt.mount(self.session, "http://127.0.0.1", source, origins=[allowed], **options)
        elif kind == "requests-auth":
            self.session = requests.Session()
            self.session.auth = rt.TokenRotateAuth(source, origins=[allowed], **options)
        elif kind == "httpx-sync":
            auth = HTTPXAuth(source, origins=[allowed], **options)
            self.client = httpx.Client(auth=auth, follow_redirects=True, timeout=10)
        else:
            auth = HTTPXAuth(source, origins=[allowed], **options)
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()

            async def make() -> httpx.AsyncClient:
                return httpx.AsyncClient(auth=auth, follow_redirects=True, timeout=10)

            self.aclient = self._run(make())

    def _run(self, coroutine):
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(CALL_TIMEOUT)

    def request(
        self, method: str, url: str, *, body=None, stream=False, params=None, headers=None
    ) -> Answer:
        if self.kind.startswith("requests"):
            data = chunks() if stream else body
            with self.session.request(
                method, url, data=data, params=params, headers=headers, timeout=10
            ) as r:
                return Answer(r.status_code, [h.status_code for h in r.history], r.content)
        if self.kind == "httpx-sync":
            content = chunks() if stream else body
            r = self.client.request(method, url, content=content, params=params, headers=headers)
            return Answer(r.status_code, [h.status_code for h in r.history], r.content)
        content = achunks() if stream else body
        r = self._run(
            self.aclient.request(method, url, content=content, params=params, headers=headers)
        )
        return Answer(r.status_code, [h.status_code for h in r.history], r.content)

    def many(self, n: int, url: str) -> list[int]:
        """``n`` concurrent GETs (threads, or tasks on the async shell); their statuses."""
        if self.kind == "httpx-async":

            async def gather() -> list[int]:
                answers = await asyncio.gather(*(self.aclient.get(url) for _ in range(n)))
                return [a.status_code for a in answers]

            return self._run(gather())
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(self.request, "GET", url) for _ in range(n)]
            return [f.result(CALL_TIMEOUT).status for f in futures]

    def close(self) -> None:
        if self.kind.startswith("requests"):
            self.session.close()
        elif self.kind == "httpx-sync":
            self.client.close()
        else:
            assert self._loop is not None
            self._run(self.aclient.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            self._loop.close()


@pytest.fixture(params=SHELLS)
def shell(request):
    """``shell(source, allowed_url, **options)`` builds a Shell of each kind."""
    built: list[Shell] = []

    def build(source, allowed, **options) -> Shell:
        made = Shell(request.param, source, allowed, **options)
        built.append(made)
        return made

    build.kind = request.param
    yield build
    for made in built:
        made.close()


def stale_rejecting(source):
    """A ChallengeServer verdict: accept any Authorization but the source's current one."""
    stale = f"Bearer {source.token().access_token}"
    return lambda headers: headers.get("authorization", stale) != stale


# -- reactive: the server says the token is stale -------------------------------------
def test_401_refreshes_once_and_resends_the_same_bytes(shell, clocked_idp, make_source):
    """A 401 for a token the client thinks valid: one refresh, one resend of the same body."""
    idp = clocked_idp
    client = shell(make_source(idp), idp.url)
    idp.rotate_signing_key()
    answer = client.request("POST", idp.resource_url, body=PAYLOAD)
    assert (answer.status, answer.history) == (200, [401])
    assert [(r["status"], r["sha256"]) for r in idp.resource_requests] == [
        (401, sha(PAYLOAD)),
        (200, sha(PAYLOAD)),
    ]
    assert idp.refresh_calls == 1


def test_403_invalid_token_refreshes(shell, clocked_idp, make_source):
    """A 403 whose Bearer challenge says invalid_token counts as stale (RFC 6750 §3.1)."""
    source = make_source(clocked_idp)
    challenge = 'Basic realm="proxy", Bearer error="invalid_token"'
    with ChallengeServer(stale_rejecting(source), status=403, challenge=challenge) as server:
        answer = shell(source, server.url).request("GET", server.url + "/thing")
        assert (answer.status, answer.history) == (200, [403])
    assert clocked_idp.refresh_calls == 1


def test_403_insufficient_scope_never_refreshes(shell, clocked_idp, make_source):
    """insufficient_scope: a new token would not help, so no refresh and no resend."""
    idp = clocked_idp
    answer = shell(make_source(idp), idp.url).request("GET", idp.url + "/resource/admin")
    assert (answer.status, answer.history) == (403, [])
    assert idp.refresh_calls == 0
    assert len(idp.resource_requests) == 1


def test_bare_403_refreshes_at_most_once_per_cooldown(shell, clocked_idp, make_source, clock):
    """A 403 without a Bearer error on every request spends one refresh per cooldown."""
    idp = clocked_idp
    client = shell(make_source(idp), idp.url)
    clock.advance(DEFAULT_COOLDOWN + 60)  # the logged-in token is older than the cooldown
    assert [client.request("GET", idp.url + "/forbidden").status for _ in range(4)] == [403] * 4
    assert idp.refresh_calls == 1
    assert len(idp.resource_requests) == 5  # one resend, after the one refresh
    clock.advance(DEFAULT_COOLDOWN + 1)
    assert client.request("GET", idp.url + "/forbidden").status == 403
    assert idp.refresh_calls == 2


def test_always_401_returns_the_second_without_a_loop(shell, clocked_idp, make_source):
    """A 401 after the refresh is returned as it is: exactly two requests reach the server."""
    with ChallengeServer(lambda headers: False) as server:
        answer = shell(make_source(clocked_idp), server.url).request("GET", server.url + "/x")
        assert (answer.status, answer.history) == (401, [401])
        assert len(server.requests) == 2
    assert clocked_idp.refresh_calls == 1


def test_a_resource_rejecting_every_token_costs_one_refresh_per_cooldown(
    shell, clocked_idp, make_source, clock
):
    """20 GETs to a resource that answers 401 to any token: one refresh, not 20."""
    with ChallengeServer(lambda headers: False) as server:
        client = shell(make_source(clocked_idp), server.url)
        statuses = [client.request("GET", server.url + "/x").status for _ in range(20)]
        assert statuses == [401] * 20
        assert clocked_idp.refresh_calls == 1
        assert len(server.requests) == 21  # one resend, after the one refresh
        clock.advance(DEFAULT_COOLDOWN + 1)
        assert client.request("GET", server.url + "/x").status == 401
        assert clocked_idp.refresh_calls == 2


@pytest.mark.parametrize(
    ("options", "header", "value"),
    [
        ({}, "Authorization", "Bearer the-callers-own"),
        ({}, "Authorization", "Basic dXNlcjpwYXNz"),
        ({"header": "X-Api-Key", "scheme": ""}, "X-Api-Key", "callers-key"),
    ],
)
def test_a_header_the_caller_set_is_sent_as_is_and_never_refreshed(
    shell, clocked_idp, make_source, options, header, value
):
    """headers= on an allowed origin wins over our token, and its 401 spends no refresh,
    also after a request that warmed the shell up."""
    with ChallengeServer(lambda headers: headers.get(header.lower()) != value) as server:
        client = shell(make_source(clocked_idp), server.url, **options)
        assert client.request("GET", server.url + "/x").status == 200  # the same URL, warm
        answer = client.request("GET", server.url + "/x", headers={header: value})
        assert (answer.status, answer.history) == (401, [])
        assert [r["headers"].get(header.lower()) for r in server.requests][1:] == [value]
    assert clocked_idp.refresh_calls == 0


# -- bodies that cannot be replayed -------------------------------------------------------
def test_stream_after_401_is_refreshed_and_returned_not_resent(shell, clocked_idp, make_source):
    """A consumed stream is never resent: the 401 comes back, and the next call works."""
    idp = clocked_idp
    source = make_source(idp)
    client = shell(source, idp.url)
    before = source.token()
    idp.rotate_signing_key()
    answer = client.request("POST", idp.resource_url, stream=True)
    assert answer.status == 401
    assert idp.refresh_calls == 1
    assert len(idp.resource_requests) == 1
    assert source.token() is not before
    assert client.request("POST", idp.resource_url, stream=True).status == 200
    assert idp.refresh_calls == 1


def test_stream_near_expiry_is_refreshed_before_sending(shell, clocked_idp, make_source, clock):
    """Within the refresh margin a stream gets a new token first; the server sees it once."""
    idp = clocked_idp
    client = shell(make_source(idp), idp.url)
    clock.advance(600 - 30)  # 30 s left: inside the 60 s margin, outside the grace
    answer = client.request("POST", idp.resource_url, stream=True)
    assert answer.status == 200
    assert idp.refresh_calls == 1
    assert [(r["status"], r["sha256"]) for r in idp.resource_requests] == [(200, sha(STREAMED))]


def test_stream_with_a_fresh_token_is_not_refreshed(shell, clocked_idp, make_source):
    """Far from expiry a stream goes out with the current token."""
    idp = clocked_idp
    assert shell(make_source(idp), idp.url).request("POST", idp.resource_url, stream=True).status
    assert idp.refresh_calls == 0


# -- origins -----------------------------------------------------------------------------
def test_look_alikes_and_other_ports_get_no_token(shell, clocked_idp, make_source):
    """Another port, another host name for the same address, userinfo '@': no token, also
    after a request that warmed the shell up."""
    idp = clocked_idp
    port = idp.url.rsplit(":", 1)[1]
    # requests turns the userinfo into Basic auth: only a Bearer header is a leak.
    bearer = lambda headers: headers.get("authorization", "").startswith("Bearer ")  # noqa: E731
    with ChallengeServer(bearer) as elsewhere:
        other = elsewhere.url.rsplit(":", 1)[1]
        client = shell(make_source(idp), idp.url)
        assert client.request("GET", idp.resource_url).status == 200
        urls = [
            f"{elsewhere.url}/x",
            f"http://localhost:{port}/resource",
            f"http://127.0.0.1:{port}@127.0.0.1:{other}/y",
            f"{elsewhere.url}/?next={idp.url}",
        ]
        statuses = [client.request("GET", url).status for url in urls]
        assert statuses == [401] * 4
        assert not any(bearer(r["headers"]) for r in elsewhere.requests)
    assert [r["authorization"] for r in idp.resource_requests] == [True, False]
    assert idp.refresh_calls == 0


def test_cross_origin_redirect_sends_no_token_and_spends_no_refresh(
    shell, clocked_idp, make_source
):
    """A redirect to another origin drops the token; that origin's 401 is not ours to fix."""
    idp = clocked_idp
    with ChallengeServer() as elsewhere:
        client = shell(make_source(idp), idp.url)
        answer = client.request("GET", f"{idp.url}/redirect", params={"to": elsewhere.url + "/x"})
        assert (answer.status, answer.history) == (401, [302])
        assert "authorization" not in elsewhere.requests[0]["headers"]
    assert idp.refresh_calls == 0


def test_same_origin_redirect_keeps_the_token(shell, clocked_idp, make_source):
    """A redirect within the allowed origin still carries the token."""
    idp = clocked_idp
    client = shell(make_source(idp), idp.url)
    answer = client.request("GET", f"{idp.url}/redirect", params={"to": idp.resource_url})
    assert answer.status == 200
    assert idp.resource_requests[0]["authorization"] is True


def test_custom_header_and_bare_token(shell, clocked_idp, make_source):
    """header= and scheme='' send the bare token in that header, and a 401 still refreshes."""
    source = make_source(clocked_idp)
    stale = source.token().access_token
    accept = lambda headers: headers.get("x-api-token", stale) != stale  # noqa: E731
    with ChallengeServer(accept) as server:
        client = shell(source, server.url, header="X-Api-Token", scheme="")
        answer = client.request("GET", server.url + "/x")
        assert (answer.status, answer.history) == (200, [401])
        assert server.requests[0]["headers"]["x-api-token"] == stale
        assert "authorization" not in server.requests[0]["headers"]


# -- errors and concurrency ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (lambda idp: idp.fail_next(1, "500"), rt.RefreshError),
        (lambda idp: idp.revoke_all(), rt.TokenInvalidated),
    ],
    ids=["500", "invalid_grant"],
)
def test_refresh_failure_surfaces_the_typed_error(shell, clocked_idp, make_source, break_it, error):
    """A failing refresh raises our typed error, which the client's own handlers also catch."""
    idp = clocked_idp
    client = shell(make_source(idp, key="acme", hint="run `mytool login`"), idp.url)
    idp.rotate_signing_key()
    break_it(idp)
    with pytest.raises(error) as caught:
        client.request("GET", idp.resource_url)
    assert caught.value.key == "acme"
    assert "mytool login" in str(caught.value)
    native = httpx.HTTPError if shell.kind.startswith("httpx") else requests.RequestException
    assert isinstance(caught.value, native)
    assert caught.value.response.status_code == 401


def test_not_logged_in_fails_before_any_request(shell, clocked_idp, make_source):
    """No stored token: NotLoggedIn at once, nothing sent to the resource or the IdP."""
    idp = clocked_idp
    client = shell(make_source(idp, login=False), idp.url)
    with pytest.raises(rt.NotLoggedIn):
        client.request("GET", idp.resource_url)
    assert (idp.resource_calls, idp.token_calls) == (0, 0)


def test_concurrent_requests_on_an_expired_token_make_one_refresh(
    shell, clocked_idp, make_source, clock
):
    """16 threads (or tasks) on a token expired by the clock: one refresh, no 401."""
    idp = clocked_idp
    client = shell(make_source(idp), idp.url)
    clock.advance(601)
    assert client.many(16, idp.resource_url) == [200] * 16
    assert idp.refresh_calls == 1
    assert idp.unauthorized == 0


def test_a_second_idp_port_is_another_origin(shell, clocked_idp, make_source):
    """Two LocalIdPs on one host: only the configured port gets the token."""
    with LocalIdP(clock=clocked_idp._clock) as other:
        client = shell(make_source(clocked_idp), clocked_idp.url)
        assert client.request("GET", other.resource_url).status == 401
        assert other.resource_requests[0]["authorization"] is False
        assert client.request("GET", clocked_idp.resource_url).status == 200
    assert clocked_idp.refresh_calls == 0


@pytest.mark.parametrize("kind", ["requests-auth", "httpx-sync", "httpx-async"])
def test_the_one_retry_covers_the_redirects_that_follow_it(kind, clocked_idp, make_source):
    """The auths keep one retry per call: after it, a same-origin redirect hop answering 401
    to the new token is returned, not refreshed again. (The adapter sees each hop as its own
    send, so there a rejected new token is bounded by the cooldown instead.)"""
    source = make_source(clocked_idp)
    stale = stale_rejecting(source)
    with ChallengeServer(
        lambda headers: headers[":path"] == "/start" and stale(headers),
        redirects={"/start": "/next"},
    ) as server:
        client = Shell(kind, source, server.url)
        try:
            answer = client.request("GET", server.url + "/start")
        finally:
            client.close()
        assert answer.status == 401
        assert [(r["path"], r["status"]) for r in server.requests] == [
            ("/start", 401),
            ("/start", 302),
            ("/next", 401),
        ]
    assert clocked_idp.refresh_calls == 1
