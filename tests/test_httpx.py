"""What only the httpx twin has: its errors, the event loop, cancellation, processes.

The behaviour it shares with the requests shells is in tests/test_shells.py.
"""

from __future__ import annotations

import asyncio
import pickle
import selectors
import subprocess
import sys
import threading
import time

import httpx
import pytest
import requests
from helpers.challenge_server import ChallengeServer

import requests_tokenrotate as rt
from requests_tokenrotate.httpx import TokenRotateAuth
from requests_tokenrotate.testing import LocalIdP

#: Bound on waiting for a child process or a condition (not a sleep).
TIMEOUT = 60.0
#: A heartbeat gap this long means the loop was blocked (the refresh takes > 0.6 s).
MAX_GAP = 0.25


def read_line(stream, timeout: float = TIMEOUT) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline()


def seed_expired(directory, idp, key="default") -> rt.Token:
    """Store a token the local clock calls expired, with a live refresh token."""
    token = rt.Token.from_response(idp.issue_tokens(), now=time.time())
    expired = token.replace(expires_at=time.time() - 1)
    rt.FileTokenStore(directory).save(key, expired)
    return expired


def file_source(directory, idp, key="default", *, deadline=None, **kwargs) -> rt.TokenSource:
    extra = {} if deadline is None else {"deadline": deadline}
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", **extra)
    return rt.TokenSource(rt.RefreshTokenGrant(client), rt.FileTokenStore(directory), key, **kwargs)


# -- configuration and errors -----------------------------------------------------------
def test_origins_are_required(make_source, clocked_idp):
    """No origins, no auth: the token never goes to whatever URL the client is given."""
    source = make_source(clocked_idp)
    with pytest.raises(rt.InvalidConfiguration, match="origins is required"):
        TokenRotateAuth(source, origins=None)  # type: ignore[arg-type]
    with pytest.raises(rt.InvalidConfiguration, match="origins is required"):
        TokenRotateAuth(source, origins=[])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_errors_are_ours_and_httpx_errors(clocked_idp, make_source, asynchronous):
    """TokenInvalidated through the auth is also an httpx.RequestError naming the request."""
    idp = clocked_idp
    auth = TokenRotateAuth(make_source(idp, key="acme"), origins=idp.url)
    idp.rotate_signing_key()
    idp.revoke_all()

    async def send_async() -> None:
        async with httpx.AsyncClient(auth=auth) as client:
            await client.get(idp.resource_url)

    def send_sync() -> None:
        with httpx.Client(auth=auth) as client:
            client.get(idp.resource_url)

    with pytest.raises(httpx.RequestError) as caught:
        asyncio.run(send_async()) if asynchronous else send_sync()
    error = caught.value
    assert isinstance(error, rt.TokenInvalidated)
    assert isinstance(error, requests.RequestException)
    assert error.key == "acme"
    assert str(error.request.url) == idp.resource_url
    assert error.response.status_code == 401
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, rt.TokenInvalidated)
    assert isinstance(copy, httpx.HTTPError)
    assert (copy.key, str(copy)) == ("acme", str(error))


def test_custom_header_leaves_an_unfollowed_redirect_to_another_origin(clocked_idp, make_source):
    """With follow_redirects=False, next_request to another origin has no custom header."""
    idp = clocked_idp
    source = make_source(idp)
    auth = TokenRotateAuth(source, origins=idp.url, header="X-Api-Token", scheme="")
    with ChallengeServer() as elsewhere, httpx.Client(auth=auth) as client:
        response = client.get(f"{idp.url}/redirect", params={"to": elsewhere.url + "/x"})
        assert response.status_code == 302
        assert "X-Api-Token" not in response.next_request.headers
        assert client.send(response.next_request).status_code == 401
        assert "x-api-token" not in elsewhere.requests[0]["headers"]
        # A redirect within the origin keeps it (and the auth would put it back anyway).
        response = client.get(f"{idp.url}/redirect", params={"to": idp.resource_url})
        assert response.next_request.headers["X-Api-Token"] == source.token().access_token
    assert idp.refresh_calls == 0


def test_a_foreign_401_after_a_followed_redirect_spends_no_refresh(clocked_idp, make_source):
    """Even when a custom header followed the redirect, a foreign origin's 401 is not ours."""
    idp = clocked_idp
    auth = TokenRotateAuth(make_source(idp), origins=idp.url, header="X-Api-Token", scheme="")
    with ChallengeServer(lambda headers: False) as elsewhere:
        with httpx.Client(auth=auth, follow_redirects=True) as client:
            response = client.get(f"{idp.url}/redirect", params={"to": elsewhere.url + "/x"})
        assert response.status_code == 401
        assert len(elsewhere.requests) == 1
    assert idp.refresh_calls == 0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_hooks_keep_a_custom_header_off_a_followed_redirect(clocked_idp, make_source, kind):
    """With auth.event_hooks, a hop the client follows to another origin gets no token."""
    idp = clocked_idp
    source = make_source(idp)
    auth = TokenRotateAuth(source, origins=idp.url, header="X-Api-Token", scheme="")
    with ChallengeServer() as elsewhere:
        url = f"{idp.url}/redirect"
        params = {"to": elsewhere.url + "/x"}
        if kind == "sync":
            with httpx.Client(
                auth=auth, event_hooks=auth.event_hooks, follow_redirects=True
            ) as client:
                response = client.get(url, params=params)
        else:

            async def run():
                async with httpx.AsyncClient(
                    auth=auth, event_hooks=auth.async_event_hooks, follow_redirects=True
                ) as client:
                    return await client.get(url, params=params)

            response = asyncio.run(run())
        assert [r.status_code for r in response.history] == [302]
        assert "x-api-token" not in elsewhere.requests[0]["headers"]
        # The first hop, to the allowed origin, carried it.
        assert response.history[0].request.headers["X-Api-Token"] == source.token().access_token
    assert idp.refresh_calls == 0


class CountingSource(rt.TokenSource):
    """A real TokenSource that counts the calls that reach its blocking token()."""

    calls = 0

    def token(self) -> rt.Token:
        type(self).calls += 1
        return super().token()


def test_tasks_of_one_loop_share_one_worker_call(tmp_path):
    """200 tasks on an expired token: one worker-thread call, not 200 threads."""
    with LocalIdP(token_latency=0.2) as idp:
        seed_expired(tmp_path, idp)
        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
        source = CountingSource(rt.RefreshTokenGrant(client), rt.FileTokenStore(tmp_path))
        auth = TokenRotateAuth(source, origins=idp.url)

        async def main() -> list[int]:
            limits = httpx.Limits(max_connections=20)
            async with httpx.AsyncClient(auth=auth, limits=limits, timeout=30) as session:
                answers = await asyncio.gather(*(session.get(idp.resource_url) for _ in range(200)))
                return [a.status_code for a in answers]

        assert asyncio.run(main()) == [200] * 200
    assert idp.refresh_calls == 1
    assert CountingSource.calls == 1


# -- the event loop ----------------------------------------------------------------------
HOLD_LOCK = (
    "import sys, requests_tokenrotate as rt\n"
    "with rt.FileTokenStore(sys.argv[1]).lock(sys.argv[2], 10):\n"
    "    print('locked', flush=True)\n"
    "    sys.stdin.readline()\n"
)


def test_the_loop_never_waits_for_a_refresh(tmp_path):
    """A refresh behind a peer's lock and a slow token endpoint leaves the loop responsive."""
    with LocalIdP(token_latency=0.4) as idp:
        seed_expired(tmp_path, idp)
        auth = TokenRotateAuth(file_source(tmp_path, idp), origins=idp.url)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(tmp_path), "default"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert read_line(holder.stdout).strip() == "locked"

            def release() -> None:
                holder.stdin.write("go\n")
                holder.stdin.flush()

            timer = threading.Timer(0.3, release)

            async def main() -> tuple[list[float], list[int], float]:
                gaps: list[float] = []
                done = asyncio.Event()

                async def heartbeat() -> None:
                    last = time.monotonic()
                    while not done.is_set():
                        await asyncio.sleep(0.005)
                        now = time.monotonic()
                        gaps.append(now - last)
                        last = now

                beat = asyncio.create_task(heartbeat())
                started = time.monotonic()
                # A timer thread, not the loop: a blocked loop must not keep the lock held.
                timer.start()
                async with httpx.AsyncClient(auth=auth, timeout=30) as client:
                    answers = await asyncio.gather(
                        *(client.get(idp.resource_url) for _ in range(32))
                    )
                elapsed = time.monotonic() - started
                done.set()
                await beat
                return gaps, [a.status_code for a in answers], elapsed

            gaps, statuses, elapsed = asyncio.run(main())
        finally:
            timer.cancel()
            if timer.ident is not None:
                timer.join(TIMEOUT)
            holder.stdin.close()
            holder.wait(TIMEOUT)
            holder.stdout.close()
    assert statuses == [200] * 32
    assert idp.refresh_calls == 1
    assert elapsed > 0.6  # it really waited for the lock (0.3 s) and the endpoint (0.4 s)
    assert max(gaps) < MAX_GAP, f"the loop stalled for {max(gaps) * 1e3:.0f} ms"


def test_cancelled_waiters_leave_the_gate_usable(tmp_path):
    """Cancelling every task mid-refresh (the one that started it too) holds no lock."""
    with LocalIdP(token_latency=0.5) as idp:
        seed_expired(tmp_path, idp)
        source = file_source(tmp_path, idp, lock_timeout=5, deadline=3)
        auth = TokenRotateAuth(source, origins=idp.url)

        async def main() -> int:
            async with httpx.AsyncClient(auth=auth, timeout=30) as client:
                tasks = [asyncio.create_task(client.get(idp.resource_url)) for _ in range(20)]
                deadline = time.monotonic() + TIMEOUT
                while idp.token_calls == 0:  # the refresh reached the token endpoint
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                for task in tasks:
                    task.cancel()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
                # Bounded: an orphaned refresh would leave this waiting forever.
                answer = await asyncio.wait_for(client.get(idp.resource_url), TIMEOUT / 2)
                return answer.status_code

        assert asyncio.run(main()) == 200
        assert idp.refresh_calls == 1
        # Both locks are free: login takes them, with a 5 s bound.
        source.login(idp.issue_tokens())

        async def again() -> int:
            async with httpx.AsyncClient(auth=auth) as client:
                return (await client.get(idp.resource_url)).status_code

        assert asyncio.run(again()) == 200  # a new loop, the same auth


# -- processes ---------------------------------------------------------------------------
def run_clients(fleet, directory, idp, plan):
    """One fleet worker per (client, callers) on one host and one token directory."""
    workers = fleet(str(directory), idp.token_url, resource=idp.resource_url, origin=idp.url)
    children = workers.launch((0, {"client": client, "threads": n}) for client, n in plan)
    return workers.gather(children, TIMEOUT)


def test_async_and_sync_httpx_processes_make_one_refresh(tmp_path, fleet):
    """4 processes x 16 tasks plus 4 x 4 threads on one expired token: one refresh."""
    with LocalIdP() as idp:
        seed_expired(tmp_path, idp)
        plan = [("httpx-async", 16)] * 4 + [("httpx-sync", 4)] * 4
        results = run_clients(fleet, tmp_path, idp, plan)
    assert [r.get("status") for r in results] == [200] * (4 * 16 + 4 * 4)
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0


def test_requests_and_httpx_processes_share_one_refresh(tmp_path, fleet):
    """requests processes and httpx processes on one key: one refresh between them."""
    with LocalIdP() as idp:
        seed_expired(tmp_path, idp)
        plan = [("requests", 4), ("httpx-async", 8), ("requests", 4), ("httpx-async", 8)]
        results = run_clients(fleet, tmp_path, idp, plan)
    assert [r.get("status") for r in results] == [200] * 24
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0


def test_a_thread_and_a_task_share_the_in_process_gate(tmp_path):
    """A requests thread and httpx tasks in one process on one source: one refresh."""
    with LocalIdP(token_latency=0.2) as idp:
        seed_expired(tmp_path, idp)
        source = file_source(tmp_path, idp)
        session = requests.Session()
        rt.mount(session, idp.url, source)
        statuses: list[int] = []
        thread = threading.Thread(
            target=lambda: statuses.append(session.get(idp.resource_url, timeout=30).status_code)
        )

        async def main() -> list[int]:
            async with httpx.AsyncClient(auth=TokenRotateAuth(source, origins=idp.url)) as client:
                thread.start()
                answers = await asyncio.gather(*(client.get(idp.resource_url) for _ in range(8)))
                return [a.status_code for a in answers]

        assert asyncio.run(main()) == [200] * 8
        thread.join(TIMEOUT)
        session.close()
    assert statuses == [200]
    assert idp.refresh_calls == 1
