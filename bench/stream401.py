"""Experiment 3: an unexpected 401 on a request with a body.

Every client holds a token it believes valid for an hour; the server then
rotates its signing key (``LocalIdP.rotate_signing_key``), so that token now
gets a 401. Each client POSTs 16 KiB as ``bytes``, as a generator, and from a
pipe (the read end of ``os.pipe()`` as a file object). LocalIdP records the
length and SHA-256 of every body it received, so a retry that sent an empty or
short body is visible. Then the caller retries once with a fresh body, as a
caller that got a 401 would.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

from bench import _peers
from bench._common import has_transport, table
from bench._peers import GOOGLE, OURS, OURS_AUTH, PEERS

SIZE = 16 * 1024
PAYLOAD = bytes(range(256)) * (SIZE // 256)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
BODIES = ("bytes", "generator", "pipe")


def _chunks() -> Iterator[bytes]:
    for start in range(0, SIZE, 4096):
        yield PAYLOAD[start : start + 4096]


def _body(kind: str) -> Any:
    if kind == "bytes":
        return PAYLOAD
    if kind == "generator":
        return _chunks()
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        writer.write(PAYLOAD)  # 16 KiB fits in the pipe buffer (64 KiB on Linux)
    return os.fdopen(read_end, "rb")


def _client(kind: str, idp: Any) -> Any:
    answer = idp.issue_tokens(_peers.CLIENT_IDS[kind])
    if kind in (OURS, OURS_AUTH):
        import requests_tokenrotate as rt

        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
        source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "stream")
        source.login(answer)
        return _peers.ours_session(kind, source, idp.url + "/")
    return _peers.peer_session(kind, _peers.peer_token(answer, time.time()), idp.token_url)


def _post(session: Any, url: str, body_kind: str) -> tuple[int | None, str | None]:
    body = _body(body_kind)
    try:
        response = session.post(url, data=body, timeout=10)
        return response.status_code, None
    except Exception as exc:  # what the caller would see
        return None, type(exc).__name__
    finally:
        if hasattr(body, "close"):
            body.close()


def _verdict(status: int | None, error: str | None, seen: list[dict[str, Any]], calls: int) -> str:
    after_401 = False
    for request in seen:
        if after_401 and (request["length"] != SIZE or request["sha256"] != DIGEST):
            return f"**resent a {request['length']}-byte body** (HTTP {request['status']})"
        after_401 = after_401 or request["status"] == 401
    if error is not None:
        return f"raised {error}"
    if status == 200:
        return "refreshed + resent the full body" if len(seen) > 1 else "sent once, 200"
    refreshed = "refreshed for the caller's retry" if calls else "no refresh"
    return f"{status} returned ({refreshed})"


def one(kind: str, body_kind: str) -> dict[str, Any]:
    from requests_tokenrotate.testing import LocalIdP

    with LocalIdP(access_token_lifetime=3600) as idp:
        session = _client(kind, idp)
        idp.rotate_signing_key()  # the token the client holds is now rejected
        idp.reset_counters()
        status, error = _post(session, idp.resource_url, body_kind)
        seen = list(idp.resource_requests)
        calls = idp.counters()["refresh_calls"]
        first = {
            "status": status,
            "error": error,
            "server_saw": [{k: r[k] for k in ("status", "length")} for r in seen],
            "refresh_calls": calls,
            "verdict": _verdict(status, error, seen, calls),
        }
        idp.reset_counters()
        retry_status, retry_error = _post(session, idp.resource_url, body_kind)
        retry_seen = list(idp.resource_requests)
        full = any(r["length"] == SIZE and r["sha256"] == DIGEST for r in retry_seen)
        session.close()
    first["caller_retry"] = (
        f"raised {retry_error}"
        if retry_error
        else f"{retry_status}" + ("" if full or retry_status != 200 else " (short body)")
    )
    return first


def run(quick: bool) -> dict[str, Any]:
    kinds = ([OURS, OURS_AUTH] if has_transport() else []) + list(PEERS)
    results = {kind: {body: one(kind, body) for body in BODIES} for kind in kinds}
    return {"results": results, "pending": [] if has_transport() else [OURS, OURS_AUTH]}


def report(result: dict[str, Any]) -> str:
    rows = []
    for kind, bodies in result["results"].items():
        for body, r in bodies.items():
            saw = ", ".join(f"{s['status']}/{s['length']} B" for s in r["server_saw"]) or "-"
            rows.append((kind, body, r["verdict"], saw, r["caller_retry"]))
    text = [
        "### 3. Unexpected 401 on a POST of 16 KiB (server-side key rotation)\n",
        table(
            [
                "client",
                "body",
                "what the client did",
                "server saw (status/body)",
                "caller's own retry",
            ],
            rows,
            "lllll",
        ),
        "",
        "requests-oauthlib and Authlib never look at the response status: a 401 goes back "
        "to the caller and nothing is refreshed, since they refresh only on their local "
        "expiry clock, and neither has an option to do otherwise "
        "(requests_oauthlib/oauth2_session.py: OAuth2Session.request; "
        "authlib/integrations/requests_client/oauth2_session.py: OAuth2Session.request and "
        "OAuth2Auth.__call__ -> authlib/oauth2/client.py: OAuth2Client.ensure_active_token).",
    ]
    if GOOGLE in result["results"]:
        text.append(
            "google-auth refreshes on 401 and calls request() again with the same `data` "
            "object whatever it is, up to max_refresh_attempts=2 "
            "(google/auth/transport/requests.py: AuthorizedSession.request); a generator or "
            "pipe is already consumed by then."
        )
    if result.get("pending"):
        text.append(f"\nPending (transport not exported yet): {', '.join(result['pending'])}.")
    return "\n".join(text)
