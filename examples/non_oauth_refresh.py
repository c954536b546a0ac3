"""Example 6: a non-OAuth refresh API driven by a callable grant.

Many in-house APIs renew a session with ``POST /api/refresh`` returning a new
pair. Any callable ``(stale) -> Token`` is a grant: raise ``TokenInvalidated``
when the API says the refresh token is dead, anything else is transient.

    python examples/non_oauth_refresh.py      # against a built-in loopback API
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import requests

import requests_tokenrotate as rt


def make_grant(api: str) -> Callable[[rt.Token | None], rt.Token]:
    def refresh_via_api(stale: rt.Token | None) -> rt.Token:
        if stale is None or not stale.refresh_token:
            raise rt.NotLoggedIn("no session stored; log in to the API first")
        response = requests.post(
            f"{api}/api/refresh", json={"refresh": stale.refresh_token}, timeout=10
        )
        if response.status_code in (401, 403):
            raise rt.TokenInvalidated("the API rejected the refresh token; log in again")
        response.raise_for_status()  # 5xx: transient, becomes a RefreshError
        body = response.json()
        now = time.time()
        return rt.Token(
            body["token"],
            refresh_token=body["refresh"],
            expires_at=now + body["ttl"],
            obtained_at=now,
        )

    return refresh_via_api


class _Api(BaseHTTPRequestHandler):
    """A toy API: 1-second session tokens, single-use refresh tokens."""

    protocol_version = "HTTP/1.1"
    sessions: ClassVar[set[str]] = set()
    refreshes: ClassVar[set[str]] = set()
    refresh_calls = 0
    lock = threading.Lock()

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.lock:
            if body.get("refresh") not in self.refreshes:
                return self._send(401, {"error": "refresh token unknown or used"})
            self.refreshes.discard(body["refresh"])
            type(self).refresh_calls += 1
            pair = {"token": secrets.token_urlsafe(), "refresh": secrets.token_urlsafe(), "ttl": 1}
            self.sessions.add(pair["token"])
            self.refreshes.add(pair["refresh"])
        self._send(200, pair)

    def do_GET(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        issued = [s for s in self.sessions if s == token]
        self._send(200 if issued else 401, {"data": "ok"} if issued else {"error": "expired"})
        with self.lock:  # a session token is good for one request here: forces a refresh
            self.sessions.discard(token)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def toy_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args(argv)
    with toy_api() as api, tempfile.TemporaryDirectory() as directory:
        first = secrets.token_urlsafe()
        _Api.refreshes.add(first)
        source = rt.TokenSource(make_grant(api), rt.FileTokenStore(directory), "toy")
        source.login(rt.Token("expired", refresh_token=first, expires_at=0, obtained_at=0))
        session = requests.Session()
        rt.mount(session, api + "/", source)
        statuses = [
            session.get(f"{api}/api/data", timeout=10).status_code for _ in range(args.requests)
        ]
        session.close()
    print(f"non-oauth refresh: statuses {statuses}, refresh calls {_Api.refresh_calls}")
    return 0 if set(statuses) == {200} else 1


if __name__ == "__main__":
    raise SystemExit(main())
