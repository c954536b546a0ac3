"""The derived grants end to end against LocalIdP: forms, caching, parents, rejections."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jwt
import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._grants import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
)
from requests_tokenrotate.testing import LocalIdP

HELPERS = Path(__file__).parent / "helpers"
STACK = "profile/org/stack"
DERIVED = {
    "exchange": lambda client, parent: rt.TokenExchangeGrant(client, parent),
    "jwt": lambda client, parent: rt.JWTBearerGrant(client, parent),
}


@pytest.fixture
def idp_60s(clock):
    """A LocalIdP on the test's settable clock (60 s access tokens)."""
    with LocalIdP(access_token_lifetime=60, clock=clock) as server:
        yield server


@pytest.fixture
def clocked_client(idp_60s, clock):
    """An OAuthClient on the test's clock, for the caching tests."""
    with rt.OAuthClient(token_url=idp_60s.token_url, client_id="cli", clock=clock) as oauth:
        yield oauth


@pytest.fixture
def client(idp):
    with rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 5)) as oauth:
        yield oauth


def logged_in(idp, client, store, key="profile", **kwargs) -> rt.TokenSource:
    """The parent: a user's rotating login under ``key``."""
    parent = rt.TokenSource(rt.RefreshTokenGrant(client), store, key, **kwargs)
    parent.login(idp.issue_tokens(**({"scope": "read write"} if key == "profile" else {})))
    return parent


def forms(idp) -> list[dict[str, str]]:
    return [dict(form) for form in idp.token_requests]


# -- the forms, checked at the server ----------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_form_at_the_server(idp, method):
    """Client credentials post grant_type, scope, audience and resource; 'refresh' asks again."""
    with rt.OAuthClient(
        token_url=idp.token_url,
        client_id="confidential",
        client_secret="s3cret-client",
        auth_method=method,
    ) as client:
        grant = rt.ClientCredentialsGrant(
            client, scope="read", audience="api", resource="https://api"
        )
        source = rt.TokenSource(grant, rt.MemoryTokenStore(), "svc/api")
        first = source.token()
        assert source.token() is first  # cached: no second call
        assert source.refresh(first).access_token != first.access_token
    sent = forms(idp)
    assert len(sent) == 2
    expected = {
        "grant_type": "client_credentials",
        "scope": "read",
        "audience": "api",
        "resource": "https://api",
        "_client_id": "confidential",
        "_auth_method": method,
    }
    if method == "client_secret_post":
        expected |= {"client_id": "confidential", "client_secret": "s3cret-client"}
    assert sent[0] == expected
    assert idp.client_credentials_calls == 2


def test_jwt_bearer_form_at_the_server(idp, client):
    """JWT bearer posts grant_type, the parent's access token as assertion, and scope."""
    parent = logged_in(idp, client, rt.MemoryTokenStore())
    derived = rt.TokenSource(
        rt.JWTBearerGrant(client, parent, scope="read", audience="api"), parent.store, STACK
    )
    token = derived.token()
    assert forms(idp) == [
        {
            "grant_type": GRANT_JWT_BEARER,
            "assertion": parent.token().access_token,
            "scope": "read",
            "audience": "api",
            "client_id": "cli",
            "_client_id": "cli",
            "_auth_method": "none",
        }
    ]
    assert idp.jwt_bearer_calls == 1
    assert token.access_token != parent.token().access_token
    assert token.refresh_token is None


def test_token_exchange_form_at_the_server(idp, client):
    """Token exchange posts the RFC 8693 fields; the actor ends up in the token's act claim."""
    store = rt.MemoryTokenStore()
    parent = logged_in(idp, client, store)
    robot = rt.TokenSource(rt.RefreshTokenGrant(client), store, "robot")
    robot.login(idp.issue_tokens(subject="robot"))
    grant = rt.TokenExchangeGrant(
        client,
        parent,
        requested_token_type=TOKEN_TYPE_JWT,
        audience="stack",
        resource="https://stack.example.com",
        scope="read",
        actor=robot,
    )
    token = rt.TokenSource(grant, store, STACK).token()
    assert forms(idp) == [
        {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": parent.token().access_token,
            "subject_token_type": TOKEN_TYPE_ACCESS,
            "actor_token": robot.token().access_token,
            "actor_token_type": TOKEN_TYPE_ACCESS,
            "requested_token_type": TOKEN_TYPE_JWT,
            "audience": "stack",
            "resource": "https://stack.example.com",
            "scope": "read",
            "client_id": "cli",
            "_client_id": "cli",
            "_auth_method": "none",
        }
    ]
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert claims["sub"] == "user"
    assert claims["act"] == {"sub": "robot"}
    assert claims["scope"] == "read"


def test_callable_parent_supplies_the_credential(idp, client):
    """A zero-argument callable works as the assertion / subject source."""
    subject = idp.issue_tokens()["access_token"]
    for grant in (
        rt.JWTBearerGrant(client, lambda: subject),
        rt.TokenExchangeGrant(client, lambda: subject),
    ):
        assert rt.TokenSource(grant, rt.MemoryTokenStore(), STACK).token().access_token
    assert [f.get("assertion", f.get("subject_token")) for f in forms(idp)] == [subject] * 2


@pytest.mark.parametrize("bad", ["a-string-token", None, 42])
def test_parent_must_be_a_source_or_a_callable(client, bad):
    """A string (or anything not callable) as parent is InvalidConfiguration, at once."""
    with pytest.raises(rt.InvalidConfiguration, match="assertion must be a TokenSource or"):
        rt.JWTBearerGrant(client, bad)
    with pytest.raises(rt.InvalidConfiguration, match="subject must be"):
        rt.TokenExchangeGrant(client, bad)
    if bad is not None:  # actor=None means no actor
        with pytest.raises(rt.InvalidConfiguration, match="actor must be"):
            rt.TokenExchangeGrant(client, lambda: "x", actor=bad)


def test_callable_returning_no_string_is_a_configuration_error(idp, client):
    """A callable that returns '' or a non-string fails clearly, without a token call."""
    source = rt.TokenSource(rt.JWTBearerGrant(client, lambda: ""), rt.MemoryTokenStore(), STACK)
    with pytest.raises(rt.InvalidConfiguration, match="returned no string"):
        source.token()
    assert idp.token_calls == 0


# -- derived-token caching ------------------------------------------------------------------


def test_derived_token_is_cached_under_its_key_across_sources(idp, client, tmp_path):
    """A second process (fresh sources, same store) reuses the derived token: zero calls."""
    store = rt.FileTokenStore(tmp_path / "tokens")
    parent = logged_in(idp, client, store)
    first = rt.TokenSource(rt.TokenExchangeGrant(client, parent), store, STACK).token()
    assert idp.token_exchange_calls == 1
    assert sorted(store.keys()) == ["profile", STACK]
    assert store.path(STACK).parent == store.directory  # the "/" cannot escape the directory
    idp.reset_counters()
    again_parent = rt.TokenSource(rt.RefreshTokenGrant(client), store, "profile")
    again = rt.TokenSource(rt.TokenExchangeGrant(client, again_parent), store, STACK)
    assert again.token().access_token == first.access_token
    assert idp.counters()["token_calls"] == 0


def pair(client, clock, store, **kwargs) -> tuple[rt.TokenSource, rt.TokenSource]:
    """A parent and its derived source as one process builds them (fresh memory)."""
    parent = rt.TokenSource(rt.RefreshTokenGrant(client), store, "profile", clock=clock)
    derived = rt.TokenSource(
        rt.TokenExchangeGrant(client, parent), store, STACK, clock=clock, **kwargs
    )
    return parent, derived


def test_max_age_limits_reuse_of_a_stored_derived_token(idp_60s, clocked_client, clock, tmp_path):
    """max_age=20: a peer's 10 s old derived token is reused, a 25 s old one is exchanged again."""
    idp, store = idp_60s, rt.FileTokenStore(tmp_path)
    parent, derived = pair(clocked_client, clock, store, max_age=20)
    parent.login(idp.issue_tokens())
    first = derived.token()
    clock.advance(10)
    assert pair(clocked_client, clock, store, max_age=20)[1].token() == first
    clock.advance(15)  # 25 s old: too old to adopt, though it is valid for 35 s more
    renewed = pair(clocked_client, clock, store, max_age=20)[1].token()
    assert renewed.access_token != first.access_token
    assert idp.token_exchange_calls == 2
    assert idp.refresh_calls == 0  # the parent's token was still good


def test_max_age_zero_never_reuses_across_processes_but_keeps_memory(
    idp_60s, clocked_client, clock, tmp_path
):
    """max_age=0: every new source exchanges again; one source reuses its token in memory."""
    idp, store = idp_60s, rt.FileTokenStore(tmp_path)
    parent, derived = pair(clocked_client, clock, store, max_age=0)
    parent.login(idp.issue_tokens())
    token = derived.token()
    assert derived.token() is token
    assert idp.token_exchange_calls == 1
    assert pair(clocked_client, clock, store, max_age=0)[1].token() != token
    assert idp.token_exchange_calls == 2


def test_grace_stops_reuse_of_a_derived_token_near_expiry(idp_60s, clocked_client, clock, tmp_path):
    """grace=10 with 60 s tokens: a peer's token is reused at 49 s, exchanged again at 51 s."""
    idp, store = idp_60s, rt.FileTokenStore(tmp_path)
    parent, derived = pair(clocked_client, clock, store, grace=10)
    parent.login(idp.issue_tokens())
    first = derived.token()
    clock.advance(49)
    assert pair(clocked_client, clock, store, grace=10)[1].token() == first
    clock.advance(2)
    assert derived.token().access_token != first.access_token
    assert idp.token_exchange_calls == 2
    assert idp.refresh_calls == 0  # the parent's default grace (5 s) still allows its token


@pytest.mark.parametrize("grant", ["exchange", "jwt"])
def test_two_processes_second_run_makes_zero_idp_requests(idp, tmp_path, python, grant):
    """The CLI run twice: discovery + exchange, then zero IdP requests and still a 200."""
    tokens, cache = tmp_path / "tokens", tmp_path / "cache"
    with rt.OAuthClient(token_url=idp.token_url, client_id="cli") as client:
        logged_in(idp, client, rt.FileTokenStore(tokens))
    command = [
        python, str(HELPERS / "derived_cli.py"), "--issuer", idp.issuer, "--dir", str(tokens),
        "--cache-dir", str(cache), "--resource", idp.resource_url, "--grant", grant,
    ]  # fmt: skip
    runs = []
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        runs.append((json.loads(done.stdout), idp.counters()))
    (first, after_first), (second, after_second) = runs
    assert first == second == {"status": 200, "sub": "user"}
    assert after_first["discovery_calls"] == 1
    assert after_first["token_calls"] == 1
    assert after_first[f"{'token_exchange' if grant == 'exchange' else 'jwt_bearer'}_calls"] == 1
    assert after_second["discovery_calls"] == after_first["discovery_calls"]
    assert after_second["token_calls"] == after_first["token_calls"]
    assert after_second["resource_calls"] == after_first["resource_calls"] + 1


# -- parents and rejections -----------------------------------------------------------------


def stamped(store, key) -> bool:
    token = store.load(key)
    return token is not None and token.invalidated_at is not None


def test_parent_invalidated_raises_naming_the_parent_key(idp_60s, clocked_client, clock, tmp_path):
    """A dead parent: TokenInvalidated names the parent; only the parent is stamped; then no calls."""
    idp, store = idp_60s, rt.FileTokenStore(tmp_path)
    parent, derived = pair(clocked_client, clock, store, hint="run `tool login`")
    parent.login(idp.issue_tokens())
    derived.token()
    clock.advance(61)  # both the parent's and the derived token expired
    idp.revoke(store.load("profile").refresh_token)
    with pytest.raises(rt.TokenInvalidated, match="run `tool login`") as info:
        derived.token()
    assert info.value.key == "profile"
    assert "'profile'" in str(info.value)
    assert stamped(store, "profile")
    assert store.load(STACK) is not None
    assert not stamped(store, STACK)
    calls = idp.token_calls
    for source in (derived, pair(clocked_client, clock, store)[1]):
        with pytest.raises(rt.TokenInvalidated, match="'profile'") as again:
            source.token()
        assert again.value.key == "profile"
    assert idp.token_calls == calls  # failing fast: no network call
    parent.login(idp.issue_tokens())  # the user logs in again: the derived source heals
    assert derived.token().access_token
    assert not stamped(store, STACK)


def test_parent_not_logged_in_names_the_parent_key(idp, client):
    """No parent token: NotLoggedIn for the parent's key, and no token call."""
    parent = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "profile")
    derived = rt.TokenSource(rt.TokenExchangeGrant(client, parent), parent.store, STACK)
    with pytest.raises(rt.NotLoggedIn) as info:
        derived.token()
    assert info.value.key == "profile"
    assert idp.token_calls == 0


@pytest.mark.parametrize("grant", ["exchange", "jwt"])
def test_rejected_assertion_refreshes_the_parent_once_and_succeeds(idp, client, tmp_path, grant):
    """invalid_grant on the exchange: the parent is refreshed once, a fresh assertion works."""
    store = rt.FileTokenStore(tmp_path)
    parent = logged_in(idp, client, store)
    rejected = parent.token().access_token
    idp.rotate_signing_key()  # the parent's access token no longer verifies at the IdP
    token = rt.TokenSource(DERIVED[grant](client, parent), store, STACK).token()
    assert token.access_token
    counts = idp.counters()
    assert (counts["invalid_grant"], counts["refresh_calls"], counts["token_calls"]) == (1, 1, 3)
    field = "subject_token" if grant == "exchange" else "assertion"
    sent = [form[field] for form in forms(idp) if field in form]
    assert sent == [rejected, parent.token().access_token]
    assert sent[0] != sent[1]
    assert not stamped(store, "profile")
    assert not stamped(store, STACK)


def test_parent_refresh_rejected_during_the_retry_is_the_parents_death(idp, client, tmp_path):
    """Exchange rejected, then the parent's own refresh rejected: TokenInvalidated for the parent."""
    store = rt.FileTokenStore(tmp_path)
    parent = logged_in(idp, client, store)
    idp.rotate_signing_key()
    idp.revoke(store.load("profile").refresh_token)
    derived = rt.TokenSource(rt.TokenExchangeGrant(client, parent), store, STACK)
    with pytest.raises(rt.TokenInvalidated) as info:
        derived.token()
    assert info.value.key == "profile"
    assert stamped(store, "profile")
    assert store.load(STACK) is None  # nothing of the derived key was written or stamped
    assert idp.invalid_grant == 2


def test_assertion_rejected_twice_is_a_transient_refresh_error(idp, client):
    """A parent whose fresh token is rejected too: RefreshError, nothing stamped, one retry only."""
    minted: list[str] = []

    def junk_grant(stale):
        minted.append(f"not-a-jwt-{len(minted) + 1}")
        return rt.Token(minted[-1], refresh_token="r")

    store = rt.MemoryTokenStore()
    parent = rt.TokenSource(junk_grant, store, "profile")
    parent.login(rt.Token("not-a-jwt-0", refresh_token="r"))
    derived = rt.TokenSource(rt.JWTBearerGrant(client, parent), store, STACK)
    with pytest.raises(rt.RefreshError, match="again after it was renewed") as info:
        derived.token()
    assert info.value.key == STACK
    assert info.value.error == "invalid_grant"
    assert not isinstance(info.value, rt.TokenInvalidated)
    assert minted == ["not-a-jwt-1"]  # the parent was refreshed exactly once
    assert [f["assertion"] for f in forms(idp)] == ["not-a-jwt-0", "not-a-jwt-1"]
    assert store.load(STACK) is None
    assert not stamped(store, "profile")


def test_callable_rejected_is_called_again_once(idp, client):
    """A callable's rejected value: called once more; a good second value succeeds."""
    good = idp.issue_tokens()["access_token"]
    values = iter(["expired-or-skewed", good, "never-asked"])
    grant = rt.TokenExchangeGrant(client, lambda: next(values))
    assert rt.TokenSource(grant, rt.MemoryTokenStore(), STACK).token().access_token
    assert [f["subject_token"] for f in forms(idp)] == ["expired-or-skewed", good]
    assert next(values) == "never-asked"


def test_transient_exchange_failure_does_not_refresh_the_parent(idp, client):
    """500s from the exchange are a RefreshError: no parent refresh, nothing stamped; next call works."""
    store = rt.MemoryTokenStore()
    parent = logged_in(idp, client, store)
    derived = rt.TokenSource(rt.TokenExchangeGrant(client, parent), store, STACK)
    idp.fail_next(client.max_attempts, "500")  # an exchange spends nothing: 500s are retried
    with pytest.raises(rt.RefreshError):
        derived.token()
    assert idp.refresh_calls == 0
    assert not stamped(store, "profile")
    assert derived.token().access_token
    assert idp.token_exchange_calls == 1
