"""The refresh gate end to end against LocalIdP: threads, processes, failures."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP


def make_source(idp: LocalIdP, store: rt.TokenStore, **kwargs) -> rt.TokenSource:
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2))
    return rt.TokenSource(rt.RefreshTokenGrant(client), store, "default", **kwargs)


def expired(response: dict) -> rt.Token:
    """The IdP's answer as a token our clock already considers expired."""
    token = rt.Token.from_response(response)
    return token.replace(expires_at=time.time() - 1)


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
