"""Shared fixtures: a loopback IdP, a settable clock, sources wired to both."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

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


# -- django-oauth-toolkit: a real authorization server written by others --------
DOT_SERVER = HELPERS / "dot_server" / "run.py"
#: Seconds for DOT's short-lived tokens (scope "short"); the others live 300 s.
DOT_SHORT_LIFETIME = 2


class DotServer:
    """A running django-oauth-toolkit (``tests/helpers/dot_server``), seen from the tests.

    Applications: ``confidential`` and ``public`` (password grant, for minting a
    token family without a browser), ``service`` and ``special`` (client
    credentials; ``special``'s secret holds characters that RFC 6749 §2.3.1
    form-encodes). Each test mints its own family, so tests never share a
    refresh token.
    """

    def __init__(self, port: int, info: dict) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        #: DOT's OIDC issuer has a path: the ``/o/`` the URLs are mounted under.
        self.issuer = f"{self.base_url}/o"
        self.token_url = f"{self.issuer}/token/"
        self.revoke_url = f"{self.issuer}/revoke_token/"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.resource_url = f"{self.base_url}/api/me"
        self.admin_url = f"{self.base_url}/api/admin"
        self.legacy_url = f"{self.base_url}/api/legacy"
        self.stats_url = f"{self.base_url}/test/stats"
        self.username = info["username"]
        self.password = info["password"]
        self.clients: dict[str, dict] = info["clients"]
        self.short_lifetime = DOT_SHORT_LIFETIME

    def __repr__(self) -> str:
        return f"DotServer({self.base_url!r})"

    def client_id(self, client: str = "public") -> str:
        return self.clients[client]["client_id"]

    def client_secret(self, client: str = "confidential") -> str | None:
        return self.clients[client]["client_secret"]

    def _post(self, url: str, data: dict, client: str) -> requests.Response:
        data = {**data, "client_id": self.client_id(client)}
        if self.client_secret(client):  # client_secret_post: no Basic-auth encoding doubts
            data["client_secret"] = self.client_secret(client)
        return requests.post(url, data=data, timeout=10)

    def mint(self, client: str = "public", scope: str | None = None) -> dict:
        """A fresh token family via the password grant; the token endpoint's JSON."""
        data = {"grant_type": "password", "username": self.username, "password": self.password}
        if scope is not None:
            data["scope"] = scope
        with self._post(self.token_url, data, client) as response:
            assert response.status_code == 200, response.text
            return response.json()

    def revoke(self, refresh_token: str, client: str = "public") -> None:
        """Revoke a refresh token through DOT's RFC 7009 endpoint."""
        data = {"token": refresh_token, "token_type_hint": "refresh_token"}
        with self._post(self.revoke_url, data, client) as response:
            assert response.status_code == 200, response.text

    def stats(self, refresh_token: str | None = None, access_token: str | None = None) -> dict:
        """The test project's counts: ``issued``/``refreshes``/``revoked``/``live`` of a family."""
        data = {"refresh_token": refresh_token, "access_token": access_token}
        with requests.post(self.stats_url, data=data, timeout=10) as response:
            assert response.status_code == 200, response.text
            return response.json()

    def resource_status(self, access_token: str) -> int:
        headers = {"Authorization": f"Bearer {access_token}"}
        with requests.get(self.resource_url, headers=headers, timeout=10) as response:
            return response.status_code

    def wait_until_expired(self, access_token: str, timeout: float = 15.0) -> None:
        """Poll the resource until DOT itself rejects ``access_token`` (bounded)."""
        deadline = time.monotonic() + timeout
        while self.resource_status(access_token) != 401:
            assert time.monotonic() < deadline, f"DOT still accepts the token after {timeout} s"
            time.sleep(0.1)


def _read_line(stream, timeout: float) -> str:
    """One line from a child's pipe, or "" after ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline()


@pytest.fixture(scope="session")
def dot_server(tmp_path_factory):
    """django-oauth-toolkit on 127.0.0.1 (a subprocess, throwaway sqlite), for the session."""
    pytest.importorskip("oauth2_provider", reason="django-oauth-toolkit is in the test extra")
    directory = tmp_path_factory.mktemp("dot")
    log = open(directory / "server.log", "wb")  # noqa: SIM115  # closed below
    command = [
        sys.executable,
        str(DOT_SERVER),
        "--port=0",  # the server binds a free port itself and reports it: no race
        f"--db={directory / 'db.sqlite3'}",
        "--access-token-lifetime=300",
        f"--short-token-lifetime={DOT_SHORT_LIFETIME}",
    ]
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        line = _read_line(child.stdout, timeout=60)
        if not line:
            child.kill()
            child.wait(10)
            log.flush()
            output = (directory / "server.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"the DOT server did not start:\n{output}")
        info = json.loads(line)
        yield DotServer(info["port"], info)
    finally:
        child.stdin.close()  # the server stops when its stdin closes
        try:
            child.terminate()
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        child.stdout.close()
        log.close()


# -- the transport (adapter and auth) ------------------------------------------
@pytest.fixture
def clocked_idp(clock):
    """A LocalIdP on the settable clock, issuing 600 s access tokens."""
    with LocalIdP(access_token_lifetime=600, clock=clock) as server:
        yield server


@pytest.fixture
def make_source(clock):
    """Build a TokenSource for a LocalIdP on the settable clock (logged in unless told not)."""
    import requests_tokenrotate as rt

    clients = []

    def make(server, *, key="k", hint=None, login=True):
        client = rt.OAuthClient(token_url=server.token_url, client_id="cli", clock=clock)
        clients.append(client)
        grant = rt.RefreshTokenGrant(client)
        source = rt.TokenSource(grant, rt.MemoryTokenStore(), key=key, hint=hint, clock=clock)
        if login:
            source.login(server.issue_tokens())
        return source

    yield make
    for client in clients:
        client.close()


# -- isolation from the user's real directories (issue 4) ----------------------
@pytest.fixture(autouse=True)
def _no_real_user_directories(tmp_path_factory, monkeypatch):
    """No test (nor a child process it starts) writes the real token or cache directories.

    ``REQUESTS_TOKENROTATE_HOME`` moves the default token store and, under
    ``cache/discovery``, the discovery cache; the XDG variables catch any other
    platformdirs default.
    """
    home = tmp_path_factory.mktemp("user-dirs")
    monkeypatch.setenv("REQUESTS_TOKENROTATE_HOME", str(home / "tokenrotate"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))


@pytest.fixture
def fleet(tmp_path):
    """``fleet(store, token_url, **options)``: a Fleet of fleet_worker.py processes.

    Hosts live under ``tmp_path/hosts``; every worker is stopped at the end.
    """
    from helpers.fleet import Fleet

    made: list[Fleet] = []

    def make(store: str, token_url: str, **options: object) -> Fleet:
        made.append(Fleet(tmp_path / "hosts", store, token_url, **options))
        return made[-1]

    yield make
    for one in made:
        one.close()


# -- PostgreSQL: a throwaway cluster for the session ----------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of our own on 127.0.0.1 (initdb in a temporary directory).

    Fails, never skips, when PostgreSQL or psycopg is missing: CI installs both.
    """
    sys.path.insert(0, str(HELPERS))
    try:
        from pg_server import PostgresServer
    finally:
        sys.path.remove(str(HELPERS))
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail('psycopg is missing: pip install -e ".[test]" (it installs the postgres extra)')
    try:
        server = PostgresServer()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(f"cannot run a PostgreSQL cluster for the tests: {exc}")
    try:
        server.start()
        server.setup_roles()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_store(postgres_server, request):
    """A PostgresTokenStore on a table of its own (dropped at the end)."""
    import requests_tokenrotate as rt

    table = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    store = rt.PostgresTokenStore(postgres_server.dsn(), table=table)
    yield store
    postgres_server.admin(f'DROP TABLE IF EXISTS "{table}"')


# -- hostile files: what another process (or user) can put at a private path ----
#: What can sit at a file path and make a careless ``open`` block or misbehave.
HOSTILE_KINDS = ("fifo", "socket", "directory")


def _plant(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "directory":
        path.mkdir(mode=0o700)
    else:
        # AF_UNIX paths are limited to ~108 bytes: bind relative to the directory.
        here = os.getcwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(path.name)
        finally:
            os.chdir(here)


@pytest.fixture(params=HOSTILE_KINDS)
def plant(request):
    """Put a FIFO, a bound AF_UNIX socket or a directory at a path (parametrised)."""

    def plant_at(path: Path) -> None:
        _plant(path, request.param)

    plant_at.kind = request.param
    return plant_at


@pytest.fixture
def bounded():
    """``bounded(call)``: call's result (or exception), or a failure if it blocks 10 s.

    A call stuck opening a FIFO is released afterwards by opening the FIFOs
    passed as ``release=`` from the other side, so no thread stays blocked.
    """

    def run(call, *, release=(), seconds=10.0):
        outcome: dict = {}

        def target():
            try:
                outcome["value"] = call()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            for fifo in release:
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
            thread.join(seconds)
            pytest.fail(f"blocked for more than {seconds} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    return run

# -- a real Secret Service (issue: KeyringTokenStore) --------------------------
@pytest.fixture(scope="session")
def secret_service(tmp_path_factory):
    """A private D-Bus session with gnome-keyring-daemon, unlocked; stopped at the end."""
    from helpers.secret_service import SecretService

    service = SecretService(tmp_path_factory.mktemp("secret-service"))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def keychain(secret_service, monkeypatch):
    """The environment of this test (and its children) points at the real Secret Service."""
    for name, value in secret_service.env.items():
        monkeypatch.setenv(name, value)
    return secret_service


# -- a real redis-server (issue 11) -----------------------------------------------
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """redis-server on 127.0.0.1 (free port, temporary dir, AOF) for the session."""
    from helpers.redis_server import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session server, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url
