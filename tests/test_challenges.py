"""WWW-Authenticate parsing (RFC 9110 §11.6.1, RFC 6750 §3)."""

from __future__ import annotations

import pytest

from requests_tokenrotate._challenges import bearer_error, is_token, parse_challenges


def test_single_bearer_challenge_with_quoted_params():
    """A plain RFC 6750 challenge yields its scheme and unquoted params."""
    value = 'Bearer realm="example", error="invalid_token", error_description="expired"'
    assert parse_challenges(value) == [
        ("bearer", {"realm": "example", "error": "invalid_token", "error_description": "expired"})
    ]


def test_commas_without_spaces_are_separators():
    """django-oauth-toolkit sends no space after commas."""
    value = (
        'Bearer realm="api",error="invalid_token",error_description="The access token is invalid."'
    )
    assert parse_challenges(value)[0][1]["error"] == "invalid_token"
    assert parse_challenges(value)[0][1]["error_description"] == "The access token is invalid."


def test_escaped_quotes_and_commas_inside_quoted_strings():
    """A quoted string may hold commas, escaped quotes and backslashes."""
    value = r'Bearer error_description="say \"hi\", then, go \\ home", error="invalid_token"'
    params = parse_challenges(value)[0][1]
    assert params["error_description"] == 'say "hi", then, go \\ home'
    assert params["error"] == "invalid_token"


def test_several_challenges_in_one_value():
    """A Basic challenge in front does not hide the Bearer error."""
    value = 'Basic realm="x", Bearer error="invalid_token"'
    assert parse_challenges(value) == [
        ("basic", {"realm": "x"}),
        ("bearer", {"error": "invalid_token"}),
    ]
    assert bearer_error(value) == "invalid_token"


def test_several_challenges_without_spaces_after_commas():
    """Challenges and params separated by bare commas are told apart."""
    value = 'Basic realm="a b",Bearer realm="x",error="insufficient_scope",scope="admin"'
    challenges = parse_challenges(value)
    assert [scheme for scheme, _ in challenges] == ["basic", "bearer"]
    assert challenges[1][1] == {"realm": "x", "error": "insufficient_scope", "scope": "admin"}


def test_scheme_and_param_names_are_case_insensitive():
    """BEARER and Error= are the same as bearer and error=."""
    assert bearer_error('BEARER Error="Invalid_Token"') == "invalid_token"
    assert bearer_error('bearer ERROR="insufficient_scope"') == "insufficient_scope"


def test_token68_challenge_before_a_bearer_one():
    """A token68 credential (Negotiate, Basic) is kept and the next challenge still parsed."""
    value = "Negotiate a87421000492aa874209af8bc028==, Bearer error=invalid_token"
    assert parse_challenges(value) == [
        ("negotiate", {"": "a87421000492aa874209af8bc028=="}),
        ("bearer", {"error": "invalid_token"}),
    ]


def test_bare_schemes_and_empty_values():
    """Schemes without params, and an empty header, parse without error."""
    assert parse_challenges("Bearer") == [("bearer", {})]
    assert parse_challenges("Basic, Bearer") == [("basic", {}), ("bearer", {})]
    assert parse_challenges("") == []
    assert bearer_error("") is None
    assert bearer_error(None) is None


def test_unquoted_param_values_and_spaces_around_equals():
    """Tokens as values, and whitespace around '=', are accepted."""
    assert parse_challenges("Bearer error = invalid_token , realm=api") == [
        ("bearer", {"error": "invalid_token", "realm": "api"})
    ]


def test_first_parameter_occurrence_wins():
    """A repeated parameter does not override the first one."""
    assert bearer_error('Bearer error="invalid_token", error="insufficient_scope"') == (
        "invalid_token"
    )


def test_bearer_without_error_has_no_error():
    """A bare Bearer challenge (no token sent) carries no error."""
    assert bearer_error('Bearer realm="local"') is None
    assert bearer_error('Basic realm="x", error="invalid_token"') is None


def test_error_of_a_later_bearer_challenge_is_found():
    """If the first Bearer challenge has no error, a later one's counts."""
    assert bearer_error('Bearer realm="a", Bearer error="invalid_token"') == "invalid_token"


@pytest.mark.parametrize(
    "value",
    [
        'Bearer error="unterminated',
        'Bearer error="x" junk, realm="y"',
        "=== ,,, ;;;",
        'Bearer ,,, error="invalid_token"',
        '"quoted" Bearer',
        "Bearer error=",
        'Bearer \x00\r\n error="x"',
        "\\",
    ],
)
def test_malformed_values_never_raise(value):
    """Garbage in a header is skipped, never an exception."""
    parse_challenges(value)
    bearer_error(value)


def test_junk_after_a_quoted_value_is_skipped():
    """Text after a quoted value up to the next comma is ignored, not taken as a scheme."""
    assert parse_challenges('Bearer error="invalid_token" trailing junk, realm="y"') == [
        ("bearer", {"error": "invalid_token", "realm": "y"})
    ]


def test_unterminated_quote_takes_the_rest():
    """An unterminated quoted string runs to the end of the value."""
    assert parse_challenges('Bearer error="invalid_token') == [
        ("bearer", {"error": "invalid_token"})
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Authorization", True), ("X-Authorization", True), ("Bad Header", False), ("", False),
     ("a:b", False), (None, False)],
)  # fmt: skip
def test_is_token(value, expected):
    """Header names and schemes must be RFC 9110 tokens."""
    assert is_token(value) is expected
