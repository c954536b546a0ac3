"""Every example in examples/ is a program: run each one against LocalIdP."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._stores import HOME_ENV

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(python, name, *args):
    done = subprocess.run(
        [python, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def seed_expired(idp, directory, key="default"):
    token = rt.Token.from_response(idp.issue_tokens())
    store = rt.FileTokenStore(directory)
    rt.TokenSource(lambda s: s, store, key).login(token.replace(expires_at=time.time() - 1))
    idp.reset_counters()
    return store


@pytest.fixture
def against(idp, tmp_path):
    """Arguments pointing an example at the test IdP and a seeded, expired store."""
    seed_expired(idp, tmp_path)
    return [
        "--api",
        idp.url,
        "--token-url",
        idp.token_url,
        "--issuer",
        idp.issuer,
        "--dir",
        str(tmp_path),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("legacy_script.py", "5 calls, statuses [200]"),
        ("vendor_sdk.py", "hvac read 3 secrets"),
        ("parallel_workers.py", "8 workers, statuses [200]"),
        ("httpx_async.py", "32 tasks, statuses [200]"),
    ],
)
def test_example_refreshes_an_expired_token_once(idp, python, against, name, expected):
    """The example works through one expired token with exactly one refresh."""
    assert expected in run(python, name, *against)
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0
    assert idp.unauthorized == 0


def test_streaming_upload_refreshes_before_sending(idp, python, tmp_path):
    """A generator upload with a token inside the margin: refreshed first, sent once."""
    store = rt.FileTokenStore(tmp_path)
    token = rt.Token.from_response(idp.issue_tokens())
    now = time.time()
    rt.TokenSource(lambda s: s, store, "default").login(
        token.replace(expires_at=now + 10, obtained_at=now - 50)
    )
    idp.reset_counters()
    out = run(
        python,
        "streaming_upload.py",
        "--api",
        idp.url,
        "--token-url",
        idp.token_url,
        "--dir",
        str(tmp_path),
    )
    assert "4194304 bytes, sha256 ok: True, refreshed before sending: True" in out
    assert idp.refresh_calls == 1
    assert idp.unauthorized == 0
    assert [r["method"] for r in idp.resource_requests] == ["POST"]


def test_oidc_discovery_is_lazy(idp, python, against, tmp_path):
    """The stored token is used with no discovery; the first refresh discovers once."""
    store = rt.FileTokenStore(tmp_path)
    rt.TokenSource(lambda s: s, store, "default").login(idp.issue_tokens())
    idp.reset_counters()
    out = run(python, "oidc_discovery.py", *against, "--cache-dir", str(tmp_path / "cache"))
    assert "statuses 200 200" in out
    assert idp.discovery_calls == 1
    assert idp.refresh_calls == 1


@pytest.mark.parametrize(
    "name", sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))
)
def test_example_runs_self_contained(python, name, tmp_path):
    """With no arguments, every example starts its own loopback server and succeeds."""
    env = {  # no client secret, no token directory of the user's: only the loopback IdP
        key: value for key, value in os.environ.items() if key != "OAUTH_CLIENT_SECRET"
    }
    env[HOME_ENV] = str(tmp_path / "home")
    done = subprocess.run(
        [python, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout


def test_non_oauth_refresh_api_with_a_callable_grant(python):
    """A callable grant drives POST /api/refresh: one refresh per expired session."""
    out = run(python, "non_oauth_refresh.py", "--requests", "4")
    assert "statuses [200, 200, 200, 200], refresh calls 4" in out
