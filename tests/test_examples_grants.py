"""The grant examples run as real programs against LocalIdP, twice: the second run is free."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._stores import HOME_ENV

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def env(tmp_path):
    """The child's environment: its own REQUESTS_TOKENROTATE_HOME, the demo client secret."""
    return {
        **os.environ,
        HOME_ENV: str(tmp_path / "home"),
        "OAUTH_CLIENT_SECRET": "s3cret-client",
    }


@pytest.fixture
def tokens(tmp_path):
    return tmp_path / "tokens"


def run(python, env, example, *args):
    done = subprocess.run(
        [python, str(EXAMPLES / example), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def log_in(idp, tokens, key="default"):
    """What the tool's login command would have done: the user's login in the store."""
    with rt.OAuthClient(token_url=idp.token_url, client_id="cli") as client:
        source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.FileTokenStore(tokens), key)
        source.login(idp.issue_tokens())


@pytest.mark.parametrize(
    ("example", "counter", "key", "needs_login"),
    [
        ("client_credentials.py", "client_credentials_calls", "service/api", False),
        ("jwt_bearer.py", "jwt_bearer_calls", "default/org/stack", True),
        ("token_exchange.py", "token_exchange_calls", "default/stack-api", True),
    ],
)
def test_example_discovers_gets_a_token_then_reuses_it(
    idp, python, env, tokens, tmp_path, example, counter, key, needs_login
):
    """First run: one discovery, one grant, a 200; second run: zero IdP requests, a 200."""
    if needs_login:
        log_in(idp, tokens)
    args = ["--issuer", idp.issuer, "--dir", str(tokens), "--resource", idp.resource_url]
    code, out, err = run(python, env, example, *args)
    assert code == 0, err
    assert f"token for {key!r}" in out
    assert f"GET {idp.resource_url} -> 200" in out
    first = idp.counters()
    assert (first["discovery_calls"], first["token_calls"], first[counter]) == (1, 1, 1)
    assert first["refresh_calls"] == 0
    stored = rt.FileTokenStore(tokens).keys()
    assert key in stored
    assert len(os.listdir(tmp_path / "home" / "cache" / "discovery")) == 1
    code, out, err = run(python, env, example, *args)
    assert code == 0, err
    assert f"GET {idp.resource_url} -> 200" in out
    second = idp.counters()
    assert second["resource_calls"] == first["resource_calls"] + 1
    assert {k: v for k, v in second.items() if k != "resource_calls"} == {
        k: v for k, v in first.items() if k != "resource_calls"
    }


def test_example_with_a_token_url_makes_no_discovery(idp, python, env, tokens):
    """--token-url instead of --issuer: the token endpoint is used as given."""
    log_in(idp, tokens)
    code, out, err = run(
        python, env, "token_exchange.py", "--token-url", idp.token_url, "--dir", str(tokens)
    )
    assert code == 0, err
    assert "(audience stack-api)" in out
    assert (idp.discovery_calls, idp.token_exchange_calls) == (0, 1)
    assert idp.token_requests[0]["audience"] == "stack-api"


@pytest.mark.parametrize("example", ["jwt_bearer.py", "token_exchange.py"])
def test_example_without_a_login_fails_naming_the_parent_key(idp, python, env, tokens, example):
    """No user login in the store: exit 1, the message names the parent key, no IdP request."""
    code, out, err = run(python, env, example, "--issuer", idp.issuer, "--dir", str(tokens))
    assert code == 1
    assert out == ""
    assert "key 'default'" in err
    assert "NotLoggedIn" in err
    assert idp.counters()["token_calls"] == idp.counters()["discovery_calls"] == 0


def test_client_credentials_example_needs_the_secret_from_the_environment(idp, python, env, tokens):
    """Without OAUTH_CLIENT_SECRET the example says so and exits 2."""
    del env["OAUTH_CLIENT_SECRET"]
    code, _, err = run(
        python, env, "client_credentials.py", "--issuer", idp.issuer, "--dir", str(tokens)
    )
    assert code == 2
    assert "OAUTH_CLIENT_SECRET" in err
    assert idp.token_calls == 0
