"""Shared fixtures: a loopback IdP, a settable clock, sources wired to both."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from requests_tokenrotate.testing import LocalIdP

HELPERS = Path(__file__).parent / "helpers"


class Clock:
    """A settable epoch clock shared by the IdP and the client under test."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp():
    """A started LocalIdP with 60 s access tokens on the real clock."""
    with LocalIdP(access_token_lifetime=60) as server:
        yield server


@pytest.fixture
def python() -> str:
    return sys.executable
