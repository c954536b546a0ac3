"""Experiment 4: short-lived access tokens.

With 30 s, 60 s and 120 s lifetimes, 10 requests evenly spread over three
lifetimes (one every 0.3 x lifetime, so 2.7 lifetimes elapse): how many token
calls does each client make? Time is stepped, not waited for: LocalIdP and our
TokenSource take a ``clock``; the peers read the wall clock directly, so their
``time.time`` / ``utcnow`` module attributes are swapped for the same stepped
clock while they run (``bench._peers.peer_clocks``). Two request shapes: a GET
(replayable) and a POST whose body is a generator (not replayable: we refresh
before the send when the token expires within the refresh margin).

A client that refreshes only when a token has (nearly) expired needs 2 token
calls here; a fixed margin larger than the lifetime refreshes on every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench import _peers
from bench._common import StepClock, has_transport, table
from bench._peers import OURS, PEERS

LIFETIMES = (30, 60, 120)
REQUESTS = 10
SPREAD = 3.0  # lifetimes over which the requests are spread
SHAPES = ("GET", "POST generator")


def _body() -> Iterator[bytes]:
    yield b"x" * 1024


def _client(kind: str, idp: Any, clock: StepClock) -> Any:
    answer = idp.issue_tokens(_peers.CLIENT_IDS[kind])
    if kind == OURS:
        import requests_tokenrotate as rt

        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", clock=clock)
        source = rt.TokenSource(
            rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "short", clock=clock
        )
        source.login(answer)
        return _peers.ours_session(kind, source, idp.url + "/")
    return _peers.peer_session(kind, _peers.peer_token(answer, clock()), idp.token_url)


def one(kind: str, lifetime: int, shape: str) -> dict[str, Any]:
    from requests_tokenrotate.testing import LocalIdP

    clock = StepClock()
    statuses = []
    with LocalIdP(access_token_lifetime=lifetime, clock=clock) as idp, _peers.peer_clocks(clock):
        session = _client(kind, idp, clock)
        idp.reset_counters()
        for _ in range(REQUESTS):
            try:
                if shape == "GET":
                    response = session.get(idp.resource_url, timeout=10)
                else:
                    response = session.post(idp.resource_url, data=_body(), timeout=10)
                statuses.append(response.status_code)
            except Exception as exc:  # what the caller would see
                statuses.append(type(exc).__name__)
            clock.advance(lifetime * SPREAD / REQUESTS)
        counters = idp.counters()
        session.close()
    return {
        "token_calls": counters["token_calls"],
        "invalid_grant": counters["invalid_grant"],
        "non_200": [s for s in statuses if s != 200],
    }


def run(quick: bool) -> dict[str, Any]:
    kinds = ([OURS] if has_transport() else []) + list(PEERS)
    results = {
        kind: {shape: {str(life): one(kind, life, shape) for life in LIFETIMES} for shape in SHAPES}
        for kind in kinds
    }
    return {
        "requests": REQUESTS,
        "spread_lifetimes": SPREAD,
        "results": results,
        "pending": [] if has_transport() else [OURS],
    }


def report(result: dict[str, Any]) -> str:
    rows = []
    for kind, shapes in result["results"].items():
        for shape, by_life in shapes.items():
            cells = []
            for life in LIFETIMES:
                r = by_life[str(life)]
                note = f" ({len(r['non_200'])} non-200)" if r["non_200"] else ""
                cells.append(f"{r['token_calls']}{note}")
            rows.append((kind, shape, *cells))
    text = [
        f"### 4. Short-lived tokens: token calls per {result['requests']} requests "
        f"spread over {result['spread_lifetimes']:g} lifetimes (stepped clock)\n",
        table(["client", "request", *(f"{life} s tokens" for life in LIFETIMES)], rows, "llrrr"),
        "",
        "Refreshing only after expiry needs 2 calls here. requests-tokenrotate uses a "
        "token until its grace (5 s, at most 2.5 % of the lifetime) before expiry, and "
        "before a body it cannot replay "
        "refreshes within the margin: 10 % of the lifetime clamped to 30-300 s and never "
        "more than half of it, i.e. 15 s, 30 s and 30 s here. "
        "Authlib refreshes when a token is within "
        "`leeway` (default 60 s) of expiry (authlib/oauth2/rfc6749/wrappers.py: "
        "OAuth2Token.is_expired); google-auth when within REFRESH_THRESHOLD = 3 min 45 s "
        "(google/auth/_helpers.py; google/auth/credentials.py: Credentials.expired), "
        "so both refresh before every request once the lifetime is at or below that "
        "margin; requests-oauthlib refreshes only after expiry, with no margin at all "
        "(oauthlib/oauth2/rfc6749/clients/base.py: Client.add_token).",
    ]
    if result.get("pending"):
        text.append(f"\nPending (transport not exported yet): {', '.join(result['pending'])}.")
    return "\n".join(text)
