"""KeyringTokenStore against a real Secret Service (gnome-keyring on a private D-Bus)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import keyring.backends.null
import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._keyring import PART_CHARS


def big_token() -> rt.Token:
    return rt.Token(
        "a" * 8192,
        refresh_token="r" * 8192,
        id_token="i" * 4096,
        expires_at=time.time() + 3600,
        obtained_at=time.time(),
    )


def test_eight_kib_tokens_round_trip_through_the_keychain_in_a_fresh_process(keychain, tmp_path):
    """An 8 KiB token survives the keychain (split into parts) and reads back in a new process."""
    store = rt.KeyringTokenStore("tokenrotate-test-roundtrip")
    token = big_token()
    store.save("acct/one", token)
    probe = (
        "import json, requests_tokenrotate as rt; "
        "t = rt.KeyringTokenStore('tokenrotate-test-roundtrip').load('acct/one'); "
        "print(json.dumps([len(t.access_token), len(t.refresh_token), len(t.id_token)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert json.loads(out) == [8192, 8192, 4096]
    assert store.load("acct/one").is_same(token)
    # Every keychain entry stays under Windows' limit.
    backend = store.backend
    manifest = json.loads(backend.get_password("tokenrotate-test-roundtrip", "key:acct/one"))
    parts = [
        backend.get_password("tokenrotate-test-roundtrip", f"part:{manifest['generation']}:{i}:acct/one")
        for i in range(manifest["parts"])
    ]
    assert manifest["parts"] > 1
    assert all(0 < len(p) <= PART_CHARS for p in parts)


def test_rewrite_drops_the_old_parts_and_keys_lists_the_index(keychain):
    """A second save replaces the parts behind the manifest; keys() and delete() keep the index."""
    store = rt.KeyringTokenStore("tokenrotate-test-index")
    store.save("a", big_token())
    store.save("a", rt.Token("small", refresh_token="r2"))
    store.save("b", rt.Token("b"))
    assert store.load("a").access_token == "small"
    backend = store.backend
    assert backend.get_password("tokenrotate-test-index", "part:1:0:a") is None
    assert store.keys() == ["a", "b"]
    store.delete("a")
    assert store.load("a") is None
    assert store.keys() == ["b"]


def test_four_processes_by_four_threads_make_one_refresh(keychain, idp, fleet):
    """The keychain has no lock: the lock file makes 16 racing callers spend one refresh."""
    idp.token_latency = 0.3
    store = rt.KeyringTokenStore("tokenrotate-test-storm")
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
    source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "default")
    source.login(rt.Token.from_response(idp.issue_tokens()).replace(expires_at=time.time() - 1))
    idp.reset_counters()
    workers = fleet("keyring:tokenrotate-test-storm", idp.token_url)
    results = workers.run(hosts=1, processes=4, threads=4)  # one host: one lock directory
    assert [r for r in results if "error" in r] == []
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0
    assert len({r["token"] for r in results}) == 1
    # The stored refresh token is the live one: it refreshes again.
    after = rt.TokenSource(rt.RefreshTokenGrant(client), store, "default")
    assert after.refresh(after.token()).access_token
    assert idp.refresh_calls == 2


def test_a_backend_that_stores_nothing_fails_the_save(tmp_path):
    """keyring's null backend accepts writes and keeps nothing: save raises TokenStoreError."""
    store = rt.KeyringTokenStore("svc", backend=keyring.backends.null.Keyring())
    with pytest.raises(rt.TokenStoreError, match="stores nothing"):
        store.save("k", rt.Token("a", refresh_token="r"))


def test_no_dbus_session_is_a_typed_error_within_seconds(tmp_path):
    """Without a D-Bus session keyring falls back to a backend that cannot store: refused fast."""
    code = (
        "import time, requests_tokenrotate as rt\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    rt.KeyringTokenStore('svc', call_timeout=3).save('k', rt.Token('a'))\n"
        "except rt.TokenStoreError as exc:\n"
        "    print(type(exc).__name__, round(time.monotonic() - started, 1))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "REQUESTS_TOKENROTATE_HOME": str(tmp_path / "home"),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-such-bus",
        "PYTHON_KEYRING_BACKEND": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    name, seconds = done.stdout.split()
    assert name == "TokenStoreError"
    assert float(seconds) < 10


def test_a_keychain_call_that_never_answers_is_bounded(keychain, tmp_path):
    """A stopped Secret Service (a hung unlock prompt looks the same) gives a typed error, no hang."""
    store = rt.KeyringTokenStore("tokenrotate-test-hang", call_timeout=1)
    store.save("k", rt.Token("a"))
    daemon = keychain._processes[-1]
    import os
    import signal

    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(rt.TokenStoreError, match="did not answer"):
            store.load("k")
        assert time.monotonic() - started < 5
        # The key's lock is not left held: the lock file is free again.
        with store.lock("k", 1):
            pass
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert store.load("k").access_token == "a"


def test_a_password_never_reaches_errors_or_repr(keychain):
    """The store's repr names the service only; a corrupt entry's error carries no secret."""
    store = rt.KeyringTokenStore("tokenrotate-test-corrupt")
    store.save("k", rt.Token("secret-access", refresh_token="secret-refresh"))
    store.backend.set_password("tokenrotate-test-corrupt", "part:1:0:k", '{"secret-refresh"')
    with pytest.raises(rt.TokenStoreError) as info:
        store.load("k")
    assert "secret" not in str(info.value) + repr(store)
    store.save("k", rt.Token("fresh"))  # a login replaces a corrupt entry
    assert store.load("k").access_token == "fresh"


def test_cli_status_names_the_keychain_backend_and_lists_the_index(keychain):
    """`tokenrotate status --store keyring:SERVICE` shows the backend and the indexed keys."""
    store = rt.KeyringTokenStore("tokenrotate-test-cli")
    store.save("alpha", rt.Token("a", refresh_token="r", expires_at=time.time() + 600))
    done = subprocess.run(
        [sys.executable, "-m", "requests_tokenrotate", "status", "--store", "keyring:tokenrotate-test-cli"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "keyring:tokenrotate-test-cli (keyring.backends.SecretService.Keyring)" in done.stdout
    assert "alpha" in done.stdout
