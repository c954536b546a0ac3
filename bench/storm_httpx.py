"""Experiment 2b: refresh storm on httpx.

The access token is already expired. P processes, each with its own
``httpx.AsyncClient`` (as real worker processes would), run T tasks that make
one GET each, all released by one event. The processes share one token store,
the way each library persists tokens:

* requests-tokenrotate: :class:`requests_tokenrotate.httpx.TokenRotateAuth` over a
  ``TokenSource`` on a ``FileTokenStore`` in a shared directory;
* Authlib: ``AsyncOAuth2Client(client_id, token=..., token_endpoint=...,
  update_token=cb)``, the token loaded from a shared JSON file at start and
  ``update_token`` writing it back (atomic replace), as MCP clients and agent CLIs
  do by hand (python-sdk #3250, hermes-agent);
* httpx-auth: ``OAuth2ResourceOwnerPasswordCredentials`` with
  ``OAuth2.token_cache = JsonTokenFileCache(path)`` (its documented shared cache),
  the file holding the expired access token and its refresh token. It refreshes
  from that refresh token, and when the refresh fails it logs in again with the
  password (``TokenMemoryCache.get_token``: ``on_expired_token``, then
  ``on_missing_token``): those logins are counted apart.

The LocalIdP rotates refresh tokens strictly (reuse -> ``invalid_grant``) or
revokes the whole family on reuse (``revoke_family``). Afterwards the stored
refresh token is spent once to see whether it is still live.

MCP's ``OAuthClientProvider`` is left out: it cannot refresh a stored token
without its interactive flow (see :data:`MCP_LEFT_OUT`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import warnings
from typing import Any

from bench import _peers
from bench._common import (
    check_refresh_token,
    loopback_only,
    read_json,
    release_together,
    summarize_outcomes,
    table,
    temp_dir,
    write_json_atomic,
)

OURS = "requests-tokenrotate (httpx)"
AUTHLIB = "Authlib AsyncOAuth2Client"
HTTPX_AUTH = "httpx-auth"
CLIENTS = (OURS, AUTHLIB, HTTPX_AUTH)
CLIENT_ID = "cli"  # LocalIdP's public client
KEY = "storm"
USERNAME, PASSWORD = "alice", "correct horse"  # httpx-auth's password grant
SCENARIOS = {
    "strict": {"reuse_policy": "strict", "token_latency": 0.0},
    "revoke_family": {"reuse_policy": "revoke_family", "token_latency": 0.0},
}
FULL_SCENARIOS = {"strict + 50 ms latency": {"reuse_policy": "strict", "token_latency": 0.05}}

MCP_LEFT_OUT = (
    "MCP's OAuthClientProvider (mcp 2.3.0) is left out: it cannot be driven to refresh a "
    "stored token without its interactive flow. Tokens loaded from storage get no expiry "
    "(OAuthClientProvider._initialize sets current_tokens but never token_expiry_time, so "
    "OAuthClientContext.is_token_valid() is true), so a restarted process sends the expired "
    "access token as it is, and the only way to a new one is a 401, which starts the full "
    "authorization flow (discovery, registration, redirect_handler / callback_handler). It "
    "refreshes only a token it obtained itself in the same process, under a lock per "
    "provider object held across the whole request (OAuthClientProvider._auth_flow), and "
    "it never re-reads its storage. It also needs httpx2, starlette and uvicorn."
)


def _httpx_auth(conf: dict[str, Any]) -> Any:
    from httpx_auth import OAuth2ResourceOwnerPasswordCredentials

    return OAuth2ResourceOwnerPasswordCredentials(
        conf["token_url"], USERNAME, PASSWORD, client_id=CLIENT_ID
    )


def _client(kind: str, conf: dict[str, Any]) -> Any:
    """This process's own client (an ``httpx.AsyncClient``)."""
    import httpx

    if kind == OURS:
        import requests_tokenrotate as rt
        from requests_tokenrotate.httpx import TokenRotateAuth

        grant = rt.RefreshTokenGrant(
            rt.OAuthClient(token_url=conf["token_url"], client_id=CLIENT_ID)
        )
        source = rt.TokenSource(grant, rt.FileTokenStore(conf["dir"]), KEY, lock_timeout=60)
        return httpx.AsyncClient(auth=TokenRotateAuth(source, origins=conf["prefix"]))
    if kind == HTTPX_AUTH:
        from httpx_auth import JsonTokenFileCache, OAuth2

        # Its file cache logs a traceback when it reads a file another process is writing.
        logging.getLogger("httpx_auth").addHandler(logging.NullHandler())
        logging.getLogger("httpx_auth").propagate = False
        OAuth2.token_cache = JsonTokenFileCache(conf["file"])  # global, as its docs set it
        return httpx.AsyncClient(auth=_httpx_auth(conf))
    from authlib.deprecate import AuthlibDeprecationWarning  # adds an "always" filter

    with warnings.catch_warnings():  # "use httpx2 instead": Authlib falls back to httpx
        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        from authlib.integrations.httpx_client import AsyncOAuth2Client
    path = conf["file"]

    async def update_token(token: Any, refresh_token: Any = None, access_token: Any = None) -> None:
        write_json_atomic(path, _peers.canonical(token))

    token = {k: v for k, v in read_json(path).items() if v is not None}  # loaded once, at start
    return AsyncOAuth2Client(
        CLIENT_ID, token=token, token_endpoint=conf["token_url"], update_token=update_token
    )


async def _one(client: Any, url: str) -> dict[str, Any]:
    started = time.time()
    try:
        response = await client.get(url, timeout=30)
        outcome: dict[str, Any] = {"status": response.status_code}
    except Exception as exc:  # what the caller would see
        outcome = {"error": type(exc).__name__}
    outcome.update(start=started, end=time.time())
    return outcome


async def _process(kind: str, conf: dict[str, Any], tasks: int, go: Any, out: Any) -> None:
    try:
        client = _client(kind, conf)
    except Exception as exc:  # reported, not raised: the parent counts it
        out.put({"pid": os.getpid(), "error": repr(exc), "results": []})
        return
    async with client:
        out.put({"pid": os.getpid(), "ready": True})
        await asyncio.to_thread(go.wait, 60)
        pending = [asyncio.ensure_future(_one(client, conf["resource_url"])) for _ in range(tasks)]
        done, _ = await asyncio.wait(pending, timeout=90)
    out.put({"pid": os.getpid(), "results": [task.result() for task in done]})


def worker(kind: str, conf: dict[str, Any], tasks: int, go: Any, out: Any) -> None:
    """One process: its own client and event loop, ``tasks`` tasks released by ``go``."""
    loopback_only()
    asyncio.run(_process(kind, conf, tasks, go, out))


def _seed(kind: str, conf: dict[str, Any], answer: dict[str, Any], now: float) -> None:
    """Store the login with its access token expired a minute ago, in ``kind``'s format."""
    if kind == OURS:
        import requests_tokenrotate as rt

        token = rt.Token(
            answer["access_token"],
            refresh_token=answer["refresh_token"],
            expires_at=now - 60,
            obtained_at=now - 3660,
        )
        rt.FileTokenStore(conf["dir"]).save(KEY, token)
    elif kind == HTTPX_AUTH:
        state = _httpx_auth(conf).state  # the cache key: a hash of the URL and the form
        cache = {state: [answer["access_token"], now - 60, answer["refresh_token"]]}
        with open(conf["file"], "w") as handle:
            json.dump(cache, handle)
    else:
        token = {**_peers.peer_token(answer, now), "expires_at": int(now) - 60}
        write_json_atomic(conf["file"], token)


def _stored_refresh_token(kind: str, conf: dict[str, Any]) -> str | None:
    if kind == OURS:
        import requests_tokenrotate as rt

        final = rt.FileTokenStore(conf["dir"]).load(KEY)
        return None if final is None else final.refresh_token
    try:
        data = read_json(conf["file"])
    except (OSError, ValueError):
        return None
    if kind == HTTPX_AUTH:
        entries = list(data.values())
        return entries[0][2] if entries and len(entries[0]) > 2 else None
    return data.get("refresh_token")


def one_run(kind: str, procs: int, tasks: int, scenario: dict[str, Any]) -> dict[str, Any]:
    from requests_tokenrotate.testing import LocalIdP

    with temp_dir() as directory, LocalIdP(access_token_lifetime=3600, **scenario) as idp:
        conf = {
            "token_url": idp.token_url,
            "resource_url": idp.resource_url,
            "prefix": idp.url,
            "dir": directory,
            "file": os.path.join(directory, "token.json"),
        }
        # The server still accepts the access token; every client must nonetheless
        # refresh first, because its expiry has passed locally.
        _seed(kind, conf, idp.issue_tokens(CLIENT_ID), time.time())
        finished, worker_errors = release_together(
            worker, (kind, conf, tasks), procs, idp.reset_counters
        )
        counters = idp.counters()
        live = check_refresh_token(idp.token_url, _stored_refresh_token(kind, conf), CLIENT_ID)
    outcomes = [r for m in finished for r in m["results"]]
    return {
        "token_calls": counters["token_calls"],
        "refresh_calls": counters["refresh_calls"],
        "password_calls": counters["password_calls"],
        "invalid_grant": counters["invalid_grant"],
        **summarize_outcomes(outcomes, procs * tasks),
        "live_refresh_token": live,
        "worker_errors": worker_errors,
    }


def run(quick: bool) -> dict[str, Any]:
    sizes = [(4, 8)] if quick else [(4, 8), (8, 8)]
    scenarios = SCENARIOS if quick else {**SCENARIOS, **FULL_SCENARIOS}
    runs = []
    for procs, tasks in sizes:
        for name, scenario in scenarios.items():
            for kind in CLIENTS:
                result = one_run(kind, procs, tasks, scenario)
                runs.append({"client": kind, "P": procs, "T": tasks, "scenario": name, **result})
    return {"runs": runs, "left_out": {"mcp OAuthClientProvider": MCP_LEFT_OUT}}


def report(result: dict[str, Any]) -> str:
    rows = []
    for run in result["runs"]:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(run["failure_kinds"].items()))
        wall = "-" if run["wall_ms"] is None else f"{run['wall_ms']:.0f}"
        rows.append(
            (
                run["client"],
                f"{run['P']}x{run['T']}",
                run["scenario"],
                run["token_calls"],
                run["invalid_grant"],
                run["password_calls"],
                f"{run['failures']}" + (f" ({kinds})" if kinds else ""),
                wall,
                "yes" if run["live_refresh_token"] else "**no**",
            )
        )
    errors = [f"{r['client']}: {e}" for r in result["runs"] for e in r["worker_errors"]]
    text = [
        "### 2b. Refresh storm on httpx (expired token, one AsyncClient per process, "
        "one request per task, one release)\n",
        table(
            [
                "client",
                "P x T",
                "server",
                "token calls",
                "invalid_grant",
                "password logins",
                "caller failures",
                "wall ms",
                "live refresh token left",
            ],
            rows,
            "lllrrrlrl",
        ),
        "",
        "Authlib's AsyncOAuth2Client holds an anyio lock per client object around "
        "ensure_active_token (authlib/integrations/httpx_client/oauth2_client.py), so one "
        "process makes one refresh at a time, but it never re-reads the shared file: every "
        "process spends the refresh token it loaded, and after a failed refresh each waiting "
        "task tries the same spent token again. httpx-auth refreshes inside a blocking "
        "auth_flow (the event loop waits for the token call) and re-reads its JSON cache "
        "only when the file's mtime moved, with no lock across processes; on invalid_grant "
        "it falls back to a password login.",
        "",
        MCP_LEFT_OUT,
    ]
    if errors:
        text += ["", "Worker errors: " + "; ".join(errors)]
    return "\n".join(text)
