"""The transport's edges: caller-set credentials, resources that reject every
token, bounded reads of discarded answers, and options checked by type checkers.

Each behaviour test runs for the adapter and for the auth (``wire`` from
test_transport.py).
"""

from __future__ import annotations

import socketserver
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers.challenge_server import ChallengeServer
from test_transport import wire  # noqa: F401  # the fixture, for both shells

import requests_tokenrotate as rt
from requests_tokenrotate._transport import DEFAULT_DRAIN_LIMIT


# -- a caller's own credential (the header cases run over every shell: test_shells) --
def test_another_auth_on_the_request_wins(wire, clocked_idp, make_source):  # noqa: F811
    """auth=HTTPBasicAuth(...) on one request: Basic goes out, not our token."""
    with ChallengeServer(lambda headers: False) as server:
        session = wire(make_source(clocked_idp), server.url)
        response = session.get(server.url + "/x", auth=("user", "pass"))
        assert response.status_code == 401
        assert server.requests[0]["headers"]["authorization"].startswith("Basic ")
        assert len(server.requests) == 1
    assert clocked_idp.refresh_calls == 0


# -- a resource that rejects every token (the cooldown itself: test_shells) ---------
def test_a_token_that_worked_is_refreshed_again_within_the_cooldown(
    wire,  # noqa: F811
    clocked_idp,
    make_source,
):
    """The cooldown only holds a token rejected at once: a key rotation is still followed."""
    idp = clocked_idp
    session = wire(make_source(idp), idp.url)
    for rotations in (1, 2, 3):
        idp.rotate_signing_key()
        response = session.get(idp.resource_url)
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert idp.refresh_calls == rotations


# -- discarded answers are read only up to a bound ------------------------------------
class _BigDenial:
    """A loopback server whose first answer is a 401 with a huge body, then 200s.

    ``sent`` counts the 401 body bytes the server managed to write before the
    client went away; ``ports`` holds each request's client port (one per
    connection).
    """

    def __init__(self, body_size: int, *, chunked: bool = False) -> None:
        self.body_size = body_size
        self.chunked = chunked
        self.sent = 0
        self.ports: list[int] = []
        self.done = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.ports.append(self.client_address[1])
                if len(owner.ports) > 1:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    return
                self.send_response(401)
                if owner.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(owner.body_size))
                self.end_headers()
                block = b"x" * 65536
                try:
                    while owner.sent < owner.body_size:
                        part = block[: owner.body_size - owner.sent]
                        if owner.chunked:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        else:
                            self.wfile.write(part)
                        owner.sent += len(part)
                    if owner.chunked:
                        self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the client closed the connection: the point
                    self.close_connection = True
                finally:
                    owner.done.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def server_bind(self) -> None:
                socketserver.TCPServer.server_bind(self)
                self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> _BigDenial:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_huge_discarded_401_is_not_read_to_the_end(
    wire,  # noqa: F811
    clocked_idp,
    make_source,
    chunked,
):
    """A 401 with a 256 MB body is abandoned after a small read; the retry still works."""
    size = 256 * 1024 * 1024
    with _BigDenial(size, chunked=chunked) as server:
        session = wire(make_source(clocked_idp), server.url)
        response = session.get(server.url + "/x")
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert server.done.wait(timeout=30)
        # Loopback socket buffers hold a few MB at most; reading it all would send 256.
        assert server.sent < 64 * 1024 * 1024
        assert len(server.ports) == 2
        assert server.ports[0] != server.ports[1]  # the big answer's connection was closed


def test_a_small_discarded_401_keeps_its_connection(wire, clocked_idp, make_source):  # noqa: F811
    """A 401 body under the drain limit is read: the retry reuses the connection."""
    with _BigDenial(DEFAULT_DRAIN_LIMIT // 2) as server:
        session = wire(make_source(clocked_idp), server.url)
        response = session.get(server.url + "/x")
        assert response.status_code == 200
        assert len(response.history[0].content) == DEFAULT_DRAIN_LIMIT // 2
        assert server.ports[0] == server.ports[1]


# -- the options are checked by type checkers ---------------------------------------
def test_mypy_flags_a_misspelt_option(tmp_path):
    """mypy --strict on a user's script flags refresh_onn= and a wrongly typed option."""
    script = tmp_path / "user.py"
    script.write_text(
        textwrap.dedent(
            """\
            import requests

            import requests_tokenrotate as rt


            def wire(source: rt.TokenSource) -> None:
                session = requests.Session()
                rt.mount(session, "https://api.example.com/", source, refresh_on=401, max_retries=3)
                rt.mount(session, "https://api.example.com/", source, refresh_onn=401)
                rt.TokenRotateAdapter(source, origins="https://api.example.com", refresh_onn=401)
                rt.TokenRotateAuth(source, origins="https://api.example.com", cooldown="60")
            """
        )
    )
    package_root = Path(rt.__file__).parent.parent  # an editable install is not on mypy's path
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"MYPYPATH": str(package_root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["9", "10", "11"], done.stdout
    assert "refresh_onn" in errors[0]
    assert "refresh_onn" in errors[1]
    assert "cooldown" in errors[2]


def test_options_survive_a_pickle_round_trip(clocked_idp):
    """Transport.options() rebuilds an equal transport (what pickling relies on)."""
    source = rt.TokenSource(lambda stale: rt.Token("t"), rt.MemoryTokenStore(), key="k")
    adapter = rt.TokenRotateAdapter(
        source,
        origins=["https://api.example.com", "http://[::1]:8080/x"],
        refresh_on=401,
        refresh_margin=12,
        header="X-Auth",
        scheme="",
        cooldown=3,
    )
    transport = adapter._transport
    rebuilt = type(transport)(source, **transport.options())
    assert rebuilt.options() == transport.options()
    assert rebuilt.origins == transport.origins
    assert requests.Session().mount("https://", adapter) is None
