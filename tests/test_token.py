"""Token: expiry maths, parsing of token responses, secrets kept out of repr."""

from __future__ import annotations

import logging
import time

import jwt
import pytest

from requests_tokenrotate import InvalidConfiguration, Token
from requests_tokenrotate._token import fingerprint


def make_jwt(**claims: object) -> str:
    return jwt.encode(dict(claims), "k" * 32, algorithm="HS256")


def test_expires_at_comes_from_expires_in():
    """expires_in (int or numeric string) sets expires_at relative to the receive time."""
    assert Token.from_response({"access_token": "a", "expires_in": 60}, now=1000).expires_at == 1060
    assert (
        Token.from_response({"access_token": "a", "expires_in": "30"}, now=1000).expires_at == 1030
    )


def test_expires_in_zero_means_expired_now():
    """expires_in 0 means 'expires now', not 'never'."""
    token = Token.from_response({"access_token": "a", "expires_in": 0}, now=1000)
    assert token.expires_at == 1000
    assert token.expires_within(0, now=1000)


@pytest.mark.parametrize("value", [-5, "soon", True, float("nan"), 10**12, [1], {"x": 1}])
def test_unusable_expires_in_is_ignored_with_a_warning(value, caplog):
    """Negative, absurd, boolean or non-numeric expires_in is ignored (logged), not fatal."""
    with caplog.at_level(logging.WARNING):
        token = Token.from_response({"access_token": "opaque", "expires_in": value}, now=1000)
    assert token.expires_at is None
    assert "expires_in" in caplog.text


def test_jwt_exp_is_used_when_expires_in_is_absent():
    """Without expires_in, the JWT exp claim (unverified) gives the expiry."""
    access = make_jwt(sub="u", exp=2_000_000_000)
    token = Token.from_response({"access_token": access}, now=1000)
    assert token.expires_at == 2_000_000_000


@pytest.mark.parametrize(
    "access",
    ["opaque-token", "a.b.c", "x.y", make_jwt(sub="u"), make_jwt(exp="tomorrow"), "..."],
)
def test_malformed_or_opaque_token_has_unknown_expiry(access):
    """An opaque or malformed JWT is never an exception: expiry is unknown."""
    assert Token.from_response({"access_token": access}).expires_at is None


@pytest.mark.parametrize(
    "body",
    [[], "token", {"access_token": ""}, {"access_token": 5}, {"token_type": "Bearer"}],
)
def test_response_without_access_token_is_a_value_error(body):
    """A body that is not an object with an access_token string raises ValueError."""
    with pytest.raises(ValueError, match=r"access_token|JSON object"):
        Token.from_response(body)


def test_token_type_is_normalised():
    """'bearer' reads 'Bearer'; other types stay as issued."""
    assert Token.from_response({"access_token": "a", "token_type": "bearer"}).token_type == "Bearer"
    assert Token.from_response({"access_token": "a", "token_type": "DPoP"}).token_type == "DPoP"


def test_repr_and_str_show_no_secret():
    """repr/str never contain the access, refresh or ID token."""
    token = Token("ACCESS-SECRET", refresh_token="REFRESH-SECRET", id_token="ID-SECRET")
    for text in (repr(token), str(token), f"{token}"):
        assert "SECRET" not in text


def test_dict_round_trip_keeps_every_field():
    """to_dict/from_dict round-trips all fields, including the invalidated stamp."""
    token = Token("a", "Bearer", "r", 10.0, "s", "i", 5.0, 7.0)
    assert Token.from_dict(token.to_dict()) == token


@pytest.mark.parametrize(
    "data",
    [{"access_token": "a", "expires_at": "x"}, {"access_token": "a", "scope": 3}, {}, []],
)
def test_from_dict_rejects_wrong_types(data):
    """A stored record with wrong types is a ValueError (the store makes it typed)."""
    with pytest.raises(ValueError, match=r"stored|access_token"):
        Token.from_dict(data)


def test_refresh_token_is_kept_when_the_answer_has_none():
    """RFC 6749 §6: no new refresh token in the answer keeps the old one."""
    stale = Token("old", refresh_token="r1")
    assert Token("new").with_refresh_token_of(stale).refresh_token == "r1"
    assert Token("new", refresh_token="r2").with_refresh_token_of(stale).refresh_token == "r2"


def test_expires_within_and_lifetime():
    """expires_within compares against the given now; lifetime is expiry minus receipt."""
    now = time.time()
    token = Token("a", expires_at=now + 100, obtained_at=now)
    assert token.lifetime == pytest.approx(100)
    assert not token.expires_within(50, now=now)
    assert token.expires_within(100, now=now)
    assert not Token("a").expires_within(10**9)


def test_fingerprint_is_short_and_stable():
    """The log fingerprint is 8 hex chars and not the secret."""
    assert fingerprint("secret") == fingerprint("secret") != "secret"
    assert len(fingerprint("secret")) == 8
    assert fingerprint(None) == "-"


# -- imported tokens keep their real age (requests-oauthlib / Authlib shapes, to_dict) --------


def test_expires_at_wins_over_a_stale_expires_in():
    """A requests-oauthlib/Authlib dict whose expires_at passed is expired, whatever expires_in says."""
    data = {"access_token": "a", "expires_in": 3600, "expires_at": 1000.0}
    token = Token.from_response(data, now=5000)
    assert token.expires_at == 1000
    assert token.expires_within(0, now=5000)


def test_obtained_at_counts_the_lifetime_from_when_it_was_issued():
    """expires_in counts from obtained_at when present, not from the import."""
    token = Token.from_response(
        {"access_token": "a", "expires_in": 60, "obtained_at": 4950}, now=5000
    )
    assert (token.obtained_at, token.expires_at) == (4950, 5010)


@pytest.mark.parametrize(
    ("extra", "expires_at"),
    [
        ({"expires_at": 7000, "obtained_at": 4000, "expires_in": 60}, 7000),  # absolute first
        ({"expires_at": "7000", "expires_in": 60}, 7000),  # numeric strings are read
        ({"expires_at": "soon", "expires_in": 60}, 5060),  # unreadable: next rule
        ({"obtained_at": 9000, "expires_in": 60}, 5060),  # a future obtained_at is now
        ({"expires_at": None, "expires_in": 60}, 5060),
    ],
)
def test_expiry_precedence(extra, expires_at):
    """expires_at > obtained_at + expires_in > now + expires_in > the JWT exp."""
    token = Token.from_response({"access_token": "a", **extra}, now=5000)
    assert token.expires_at == expires_at


def test_expires_at_wins_over_the_jwt_exp():
    """The JWT exp is the last resort: an explicit expires_at is used first."""
    access = make_jwt(exp=9999)
    assert Token.from_response({"access_token": access, "expires_at": 6000}).expires_at == 6000
    assert Token.from_response({"access_token": access}).expires_at == 9999


@pytest.mark.parametrize(
    "access_token",
    [
        "zq b",
        "zq\r\nX-Evil: 1",
        "zq\nb",
        "zq\x00b",
        "zq\tb",
        "\x7fzq",
        "zq\u0442\u043e\u043a",
        " zq",
    ],
)
def test_access_token_unfit_for_a_header_is_refused(access_token):
    """Token and from_response refuse what cannot follow 'Bearer ', never quoting it."""
    with pytest.raises(InvalidConfiguration) as built:
        Token(access_token)
    with pytest.raises(ValueError, match="header") as parsed:  # also a ValueError
        Token.from_response({"access_token": access_token, "refresh_token": "r"})
    for error in (built.value, parsed.value):
        assert "zq" not in str(error)
        assert "zq" not in repr(error.args)
    assert Token("a\xe9b").access_token == "a\xe9b"  # obs-text (Latin-1) is allowed
