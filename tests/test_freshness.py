"""Freshness on plain values: the reuse grace and the proactive margin."""

from __future__ import annotations

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate import _freshness as fresh


def _token(lifetime: float | None, *, obtained_at: float = 1000.0) -> rt.Token:
    expires_at = None if lifetime is None else obtained_at + lifetime
    return rt.Token("a", expires_at=expires_at, obtained_at=obtained_at)


@pytest.mark.parametrize(
    ("lifetime", "grace", "expected"),
    [
        (3600, None, 5.0),  # the default, for a long-lived token
        (2, None, 0.05),  # at most 2.5 % of a short lifetime
        (None, None, 5.0),  # unknown lifetime
        (3600, 30.0, 30.0),  # as configured
        (20, 30.0, 10.0),  # ... but at most half the lifetime
    ],
)
def test_the_grace_scales_with_short_lifetimes(lifetime, grace, expected):
    """The reuse grace is 5 s, at most 2.5 % of the lifetime; a configured one at most half."""
    assert fresh.grace_for(_token(lifetime), grace) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("lifetime", "margin", "expected"),
    [
        (3600, None, 300.0),  # 10 %, clamped to 300 s
        (600, None, 60.0),
        (100, None, 30.0),  # at least 30 s ...
        (40, None, 20.0),  # ... but at most half the lifetime
        (3600, 12.0, 12.0),
    ],
)
def test_the_margin_scales_and_is_capped(lifetime, margin, expected):
    """The proactive margin: 10 % of the lifetime in 30 s - 300 s, at most half of it."""
    assert rt.RefreshPolicy(margin).margin_for(_token(lifetime)) == pytest.approx(expected)


def test_the_margin_only_brings_unreplayable_bodies_forward():
    """Inside the margin but outside the grace: a stream waits for a refresh, bytes do not."""
    token = _token(3600)
    now = token.expires_at - 100  # within 300 s of expiry, well before the 5 s grace
    policy = rt.RefreshPolicy()
    assert policy.needs_refresh(token, now, replayable=False)
    assert not policy.needs_refresh(token, now, replayable=True)
    assert fresh.is_usable(token, now)


def test_usable_and_adoptable():
    """Usable: not invalidated, outside the grace, young enough from the store; adoptable: not the stale one."""
    token = _token(3600)
    assert fresh.is_usable(token, 1000.0)
    assert not fresh.is_usable(token, token.expires_at - 4)
    assert not fresh.is_usable(token.replace(invalidated_at=1.0), 1000.0)
    assert not fresh.is_usable(token, 1100.0, max_age=50, from_store=True)
    assert fresh.is_usable(token, 1100.0, max_age=50)
    assert not fresh.is_adoptable(token, token, 1000.0)
    assert fresh.is_adoptable(token, rt.Token("b"), 1000.0)


def test_a_token_stale_on_arrival_is_stretched():
    """A token that arrives within its grace is used for MIN_REUSE seconds."""
    token = fresh.stretched(_token(1), 5000.0)
    assert (token.obtained_at, token.expires_at) == (5000.0, 5000.0 + fresh.MIN_REUSE)
