"""Token-endpoint requests on plain values: client authentication and grant forms."""

from __future__ import annotations

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate import _oauth as oauth


@pytest.mark.parametrize(
    ("given", "secret", "expected"),
    [
        (None, "s", "client_secret_basic"),
        (None, None, "none"),
        ("client_secret_post", "s", "client_secret_post"),
    ],
)
def test_the_auth_method_defaults_by_secret(given, secret, expected):
    """Basic with a secret, none without one, else as given."""
    assert oauth.auth_method_for(given, secret) == expected


@pytest.mark.parametrize(
    ("given", "secret"), [("client_secret_jwt", "s"), ("client_secret_post", None)]
)
def test_a_bad_auth_method_is_a_configuration_error(given, secret):
    """An unknown method, or one without its secret, is refused by name."""
    with pytest.raises(rt.InvalidConfiguration, match="auth_method"):
        oauth.auth_method_for(given, secret)


def test_client_authentication_goes_in_the_body_or_the_basic_header():
    """post: id and secret in the form; none: the id only; basic: form-urlencoded pair (RFC 6749 §2.3.1)."""
    form = {"grant_type": "client_credentials"}
    ids = {"client_id": "a b", "client_secret": "p:w&"}
    post = oauth.authenticated(form, auth_method="client_secret_post", **ids)
    assert post == {**form, "client_id": "a b", "client_secret": "p:w&"}
    assert oauth.authenticated(form, auth_method="none", **ids) == {**form, "client_id": "a b"}
    assert oauth.authenticated(form, auth_method="client_secret_basic", **ids) == form
    assert oauth.basic_credentials(auth_method="client_secret_basic", **ids) == ("a+b", "p%3Aw%26")
    assert oauth.basic_credentials(auth_method="client_secret_post", **ids) is None


def test_grant_forms():
    """Each grant's form, optional parameters only when given."""
    assert oauth.refresh_form("r") == {"grant_type": "refresh_token", "refresh_token": "r"}
    assert oauth.client_credentials_form(scope="s", resource="https://r") == {
        "grant_type": "client_credentials",
        "scope": "s",
        "resource": "https://r",
    }
    assert oauth.jwt_bearer_form(audience="a") == {
        "grant_type": oauth.GRANT_JWT_BEARER,
        "audience": "a",
    }
    assert oauth.token_exchange_form(subject_token_type="t", actor_token_type="u") == {
        "grant_type": oauth.GRANT_TOKEN_EXCHANGE,
        "subject_token_type": "t",
        "actor_token_type": "u",
    }


def test_secrets_in_a_form_are_listed_for_redaction():
    """Every credential value in the form, and the client secret, is named for redaction."""
    form = {"grant_type": "refresh_token", "refresh_token": "r1", "scope": "s"}
    assert sorted(oauth.secrets_in(form, "cs")) == ["cs", "r1"]
