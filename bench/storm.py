"""Experiment 2: refresh storm.

The access token is already expired. P processes x T threads, released together
by one event, each make one GET through one session per process. Tokens are
shared the way each library persists them: requests-tokenrotate through a
``FileTokenStore`` in a shared directory; the peers through their update callback
writing one shared JSON file (atomic replace), which each process reads once at
start. The LocalIdP rotates refresh tokens strictly (reuse -> ``invalid_grant``);
variants: ``revoke_family`` (reuse also revokes every token of that login) and
50 ms of token-endpoint latency. Afterwards the stored refresh token is spent
once to see whether it is still live.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from bench import _peers
from bench._common import (
    check_refresh_token,
    has_transport,
    loopback_only,
    read_json,
    release_together,
    summarize_outcomes,
    table,
    temp_dir,
    write_json_atomic,
)
from bench._peers import OURS, PEERS

KEY = "storm"
SCENARIOS = {
    "strict": {"reuse_policy": "strict", "token_latency": 0.0},
    "revoke_family": {"reuse_policy": "revoke_family", "token_latency": 0.0},
    "strict + 50 ms latency": {"reuse_policy": "strict", "token_latency": 0.05},
}


def _client(kind: str, conf: dict[str, Any]) -> Any:
    if kind == OURS:
        import requests_tokenrotate as rt

        client = rt.OAuthClient(token_url=conf["token_url"], client_id="cli")
        store = rt.FileTokenStore(conf["dir"])
        source = rt.TokenSource(rt.RefreshTokenGrant(client), store, KEY, lock_timeout=60)
        return _peers.ours_session(kind, source, conf["prefix"])
    path = conf["file"]
    token = read_json(path)  # each process loads the shared token once, at start

    def persist(new: dict[str, Any]) -> None:
        write_json_atomic(path, new)

    return _peers.peer_session(kind, token, conf["token_url"], persist)


def worker(kind: str, conf: dict[str, Any], threads: int, go: Any, out: Any) -> None:
    """One process: build the client, arm ``threads`` threads, report what each saw."""
    loopback_only()
    try:
        session = _client(kind, conf)
    except Exception as exc:  # reported, not raised: the parent counts it
        out.put({"pid": os.getpid(), "error": repr(exc), "results": []})
        return
    results: list[dict[str, Any]] = []
    guard = threading.Lock()

    def one(index: int) -> None:
        go.wait(60)
        started = time.time()
        try:
            response = session.get(conf["resource_url"], timeout=30)
            outcome = {"status": response.status_code}
        except Exception as exc:  # what the caller would see
            outcome = {"error": type(exc).__name__}
        outcome.update(start=started, end=time.time())
        with guard:
            results.append(outcome)

    pool = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    out.put({"pid": os.getpid(), "ready": True})
    deadline = time.monotonic() + 90
    for thread in pool:
        thread.join(max(deadline - time.monotonic(), 0.0))
    out.put({"pid": os.getpid(), "results": results})


def one_run(kind: str, procs: int, threads: int, scenario: dict[str, Any]) -> dict[str, Any]:
    from requests_tokenrotate.testing import LocalIdP

    with temp_dir() as directory, LocalIdP(access_token_lifetime=3600, **scenario) as idp:
        client_id = _peers.CLIENT_IDS[kind]
        answer = idp.issue_tokens(client_id)
        now = time.time()
        conf = {
            "token_url": idp.token_url,
            "resource_url": idp.resource_url,
            "prefix": idp.url + "/",
            "dir": directory,
            "file": os.path.join(directory, "token.json"),
        }
        # The access token is still accepted by the server; every client must
        # nonetheless refresh first, because its expiry has passed locally.
        expired = {**_peers.peer_token(answer, now), "expires_at": int(now) - 60}
        if kind == OURS:
            import requests_tokenrotate as rt

            rt.FileTokenStore(directory).save(
                KEY,
                rt.Token(
                    answer["access_token"],
                    refresh_token=answer["refresh_token"],
                    expires_at=now - 60,
                    obtained_at=now - 3660,
                ),
            )
        else:
            write_json_atomic(conf["file"], expired)
        finished, worker_errors = release_together(
            worker, (kind, conf, threads), procs, idp.reset_counters
        )
        counters = idp.counters()
        if kind == OURS:
            import requests_tokenrotate as rt

            final = rt.FileTokenStore(directory).load(KEY)
            refresh_token = None if final is None else final.refresh_token
            invalidated = final is not None and final.invalidated_at is not None
        else:
            refresh_token = read_json(conf["file"]).get("refresh_token")
            invalidated = False
        live = check_refresh_token(idp.token_url, refresh_token, client_id)
    outcomes = [r for m in finished for r in m["results"]]
    return {
        "token_calls": counters["token_calls"],
        "refresh_calls": counters["refresh_calls"],
        "invalid_grant": counters["invalid_grant"],
        **summarize_outcomes(outcomes, procs * threads),
        "live_refresh_token": live,
        "store_invalidated": invalidated,
        "worker_errors": worker_errors,
    }


def run(quick: bool) -> dict[str, Any]:
    sizes = [(4, 8)] if quick else [(4, 8), (8, 8)]
    kinds = ([OURS] if has_transport() else []) + list(PEERS)
    runs = []
    for procs, threads in sizes:
        for name, scenario in SCENARIOS.items():
            for kind in kinds:
                result = one_run(kind, procs, threads, scenario)
                runs.append({"client": kind, "P": procs, "T": threads, "scenario": name, **result})
    return {"runs": runs, "pending": [] if has_transport() else [OURS]}


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
                f"{run['failures']}" + (f" ({kinds})" if kinds else ""),
                wall,
                "yes" if run["live_refresh_token"] else "**no**",
            )
        )
    text = [
        "### 2. Refresh storm (expired token, one request per thread, one release)\n",
        table(
            [
                "client",
                "P x T",
                "server",
                "token calls",
                "invalid_grant",
                "caller failures",
                "wall ms",
                "live refresh token left",
            ],
            rows,
            "lllrrlrl",
        ),
    ]
    text += [
        "",
        "None of the peers can be configured to single-flight a refresh, across threads or "
        "processes: requests-oauthlib refreshes inside OAuth2Session.request with no lock "
        "(requests_oauthlib/oauth2_session.py: OAuth2Session.request); Authlib's requests "
        "client neither (authlib/oauth2/client.py: OAuth2Client.ensure_active_token; only "
        "the asyncio httpx client has a lock, authlib/integrations/httpx_client/"
        "oauth2_client.py: AsyncOAuth2Client.__init__, and it is per client object); "
        "google-auth refreshes in Credentials._blocking_refresh with no lock "
        "(google/auth/credentials.py) and has no token-update callback at all, so the "
        "harness persists the credentials after a request that changed them. None of them "
        "re-reads a shared store before refreshing, so each process spends the refresh "
        "token it loaded at start.",
    ]
    if result.get("pending"):
        text.append(f"\nPending (transport not exported yet): {', '.join(result['pending'])}.")
    return "\n".join(text)
