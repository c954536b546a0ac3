"""The refresh gate end to end against LocalIdP: threads, processes, failures."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP

HELPERS = Path(__file__).parent / "helpers"


def make_source(idp: LocalIdP, store: rt.TokenStore, **kwargs) -> rt.TokenSource:
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2))
    return rt.TokenSource(rt.RefreshTokenGrant(client), store, "default", **kwargs)


def expired(response: dict) -> rt.Token:
    """The IdP's answer as a token our clock already considers expired."""
    token = rt.Token.from_response(response)
    return token.replace(expires_at=time.time() - 1)


def test_fifty_threads_one_expired_token_make_one_refresh(idp, tmp_path):
    """50 threads racing one expired token: exactly 1 refresh; all get the same new token."""
    source = make_source(idp, rt.FileTokenStore(tmp_path))
    source.login(expired(idp.issue_tokens()))
    idp.reset_counters()
    barrier = threading.Barrier(50)
    seen: list[str] = []

    def run() -> None:
        barrier.wait(10)
        seen.append(source.token().access_token)

    threads = [threading.Thread(target=run) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert idp.refresh_calls == 1
    assert idp.token_calls == 1
    assert len(seen) == 50
    assert len(set(seen)) == 1


def test_eight_processes_by_four_threads_make_one_refresh(idp, tmp_path, run_refresh_workers):
    """8 real processes x 4 threads on one store: 1 refresh call, 0 invalid_grant."""
    idp.token_latency = 0.3  # widen the race window so the workers really overlap
    store = rt.FileTokenStore(tmp_path)
    make_source(idp, store).login(expired(idp.issue_tokens()))
    idp.reset_counters()
    results = run_refresh_workers(tmp_path, idp.token_url, processes=8, threads=4)
    assert len(results) == 32
    assert [r for r in results if "error" in r] == []
    assert idp.token_calls == 1
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0
    assert len({r["token"] for r in results}) == 1
    # Bracket check: the callers were in flight together, so the race was real.
    first_end = min(r["end"] for r in results)
    assert sum(r["start"] < first_end for r in results) >= 16
    # The stored refresh token is the live one: it refreshes again.
    after = make_source(idp, store)
    assert after.refresh(after.token()).access_token
    assert idp.refresh_calls == 2


def test_peer_refreshed_token_is_adopted_with_zero_network_calls(idp, tmp_path):
    """refresh(stale) adopts what another process already wrote to the store."""
    store = rt.FileTokenStore(tmp_path)
    ours = make_source(idp, store)
    ours.login(idp.issue_tokens())
    stale = ours.token()
    peer = make_source(idp, store)
    peer.refresh(stale)
    idp.reset_counters()
    assert ours.refresh(stale).access_token == store.load("default").access_token
    assert idp.token_calls == 0


def test_invalid_grant_stamps_and_later_calls_skip_the_network(idp, tmp_path):
    """invalid_grant: TokenInvalidated, store stamped, next token() without a call; login clears."""
    store = rt.FileTokenStore(tmp_path)
    source = make_source(idp, store, hint="run `tool login`")
    response = idp.issue_tokens()
    source.login(expired(response))
    idp.revoke(response["refresh_token"])
    with pytest.raises(rt.TokenInvalidated, match="run `tool login`"):
        source.token()
    assert store.load("default").invalidated_at is not None
    calls = idp.token_calls
    for fresh in (source, make_source(idp, store)):
        with pytest.raises(rt.TokenInvalidated):
            fresh.token()
    assert idp.token_calls == calls
    source.login(idp.issue_tokens())
    assert store.load("default").invalidated_at is None
    assert make_source(idp, store).token().access_token


@pytest.mark.parametrize(
    "mode", ["500", "503", "429", "html", "hang", "reset", "invalid_json", "no_access_token"]
)
def test_transient_failures_raise_refresh_error_and_stamp_nothing(idp, tmp_path, mode):
    """500 / HTML / timeout / reset and friends: RefreshError, no stamp; the next call succeeds."""
    idp.hang_seconds = 3
    store = rt.FileTokenStore(tmp_path)
    source = make_source(idp, store)
    source.login(expired(idp.issue_tokens()))
    idp.fail_next(1, mode)
    with pytest.raises(rt.RefreshError):
        source.token()
    assert store.load("default").invalidated_at is None
    assert source.token().access_token
    assert idp.refresh_calls == 1


def test_lock_holder_killed_by_sigkill_releases_the_lock(tmp_path, python):
    """A process SIGKILLed while holding the lock frees it at once; the store is intact."""
    store = rt.FileTokenStore(tmp_path)
    token = rt.Token("a", refresh_token="r", expires_at=2e9, obtained_at=1e9)
    store.save("default", token)
    script = (
        "import sys, time, requests_tokenrotate as rt\n"
        f"store = rt.FileTokenStore({str(tmp_path)!r})\n"
        "with store.lock('default', 5):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([python, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(rt.LockTimeout), store.lock("default", 0.05):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        started = time.monotonic()
        with store.lock("default", 5):
            waited = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
    assert waited < 5
    assert store.load("default") == token


def test_no_secret_in_logs_reprs_or_errors(idp, tmp_path, caplog):
    """DEBUG logs, reprs and error messages never contain a token or the client secret."""
    store = rt.FileTokenStore(tmp_path)
    client = rt.OAuthClient(
        token_url=idp.token_url, client_id="confidential", client_secret="s3cret-client"
    )
    source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "default")
    secrets = {"s3cret-client"}
    texts = []
    with caplog.at_level(logging.DEBUG):
        response = idp.issue_tokens("confidential")
        secrets |= {response["access_token"], response["refresh_token"]}
        source.login(expired(response))
        token = source.token()
        secrets |= {token.access_token, token.refresh_token}
        texts += [repr(token), str(token), repr(source), repr(client), repr(store)]
        idp.revoke(token.refresh_token)
        source.login(token.replace(expires_at=time.time() - 1))
        for _ in range(2):
            with pytest.raises(rt.TokenInvalidated) as info:
                source.token()
            texts += [str(info.value), repr(info.value)]
    logged = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(texts)
    assert "refresh done" in logged  # the DEBUG lifecycle lines were captured
    for secret in secrets:
        assert secret not in logged
    assert sys.modules.get("requests_tokenrotate") is rt


def test_corrupt_store_file_is_reported_until_login_replaces_it(idp, tmp_path):
    """A corrupt token file: token() raises TokenStoreError naming it (file untouched); login() recovers."""
    store = rt.FileTokenStore(tmp_path)
    source = make_source(idp, store)
    source.login(expired(idp.issue_tokens()))
    store.path("default").write_bytes(b'{"version": 1, "tok')
    for _ in range(2):
        with pytest.raises(rt.TokenStoreError, match=re.escape(str(store.path("default")))):
            make_source(idp, store).token()
    assert store.path("default").read_bytes() == b'{"version": 1, "tok'
    assert idp.token_calls == 0
    source.login(idp.issue_tokens())
    assert make_source(idp, store).token().access_token
    store.path("default").write_bytes(b"")
    source.logout()
    with pytest.raises(rt.NotLoggedIn):
        make_source(idp, store).token()
