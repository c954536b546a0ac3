"""The bearer policy on plain values: origins, the header, staleness verdicts."""

from __future__ import annotations

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._policy import _MAX_VERDICTS, BearerPolicy

API = "https://api.example.com"


@pytest.fixture
def policy():
    source = rt.TokenSource(
        lambda stale: rt.Token("t2"), rt.MemoryTokenStore(), "k", clock=lambda: 1000.0
    )
    source.login(rt.Token("t1", expires_at=5000.0, obtained_at=900.0))
    return BearerPolicy(source, origins=API)


def test_origin_verdicts_stay_right_and_bounded_over_many_urls(policy):
    """Many distinct URLs, ours and look-alikes, interleaved: each verdict is right, the caches bounded."""
    for index in range(3 * _MAX_VERDICTS):
        assert policy.is_allowed(f"{API}/items/{index}")
        assert not policy.is_allowed(f"https://api.example.com.evil.net/items/{index}")
        assert not policy.is_allowed(f"http://api.example.com/items/{index}")
        assert policy.is_allowed(f"{API}:443/items/{index}?q=1")
    assert len(policy.allowed_urls) <= _MAX_VERDICTS
    assert len(policy._verdicts) <= _MAX_VERDICTS


def test_the_header_for_a_token_is_computed_once_and_recognised(policy):
    """header_for gives the token and "Bearer <token>"; the value counts as ours, another does not."""
    token, value = policy.header_for(replayable=True)
    assert (token.access_token, value) == ("t1", "Bearer t1")
    assert policy.header_for(replayable=True)[1] is value
    assert policy.is_issued(value)
    assert not policy.has_callers_header({"Authorization": value})
    assert policy.has_callers_header({"Authorization": "Bearer mine"})
    assert not policy.has_callers_header({})


def test_an_unreplayable_body_inside_the_margin_gets_a_fresh_token(policy):
    """Within 300 s of expiry a stream waits for a refresh; a replayable body does not."""
    policy.source.clock = lambda: 4800.0
    assert policy.header_for(replayable=True)[0].access_token == "t1"
    assert policy.header_for(replayable=False)[0].access_token == "t2"


@pytest.mark.parametrize(
    ("status", "challenge", "stale"),
    [
        (401, None, True),
        (401, 'Bearer error="insufficient_scope"', False),
        (403, 'Bearer error="invalid_token"', True),
        (403, 'Bearer error="insufficient_scope"', False),
        (404, None, False),
    ],
)
def test_stale_answers(policy, status, challenge, stale):
    """RFC 6750 §3.1 on plain values: what a status and its challenge say about the token."""
    token = policy.source.token()
    assert policy.is_stale_answer(status, challenge, token) is stale
