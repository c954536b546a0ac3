"""The clients under test, each configured as its documentation says.

Every client is a :class:`requests.Session` (or subclass) that attaches a bearer
token to requests under one prefix and refreshes it with a refresh-token grant:

* ``requests-tokenrotate``: ``rt.mount(session, prefix, source)``;
* ``requests-tokenrotate (auth=)``: ``session.auth = rt.TokenRotateAuth(source, origins=prefix)``;
* ``requests-oauthlib``: ``OAuth2Session(client_id, token=..., auto_refresh_url=...,
  auto_refresh_kwargs={"client_id": ...}, token_updater=cb)``. Its refresh body holds
  no ``client_id`` unless given in ``auto_refresh_kwargs`` (requests_oauthlib/
  oauth2_session.py: OAuth2Session.refresh_token -> oauthlib prepare_refresh_body);
* ``Authlib``: ``authlib.integrations.requests_client.OAuth2Session(client_id,
  token=..., token_endpoint=..., update_token=cb)`` (default ``leeway=60``);
* ``google-auth``: ``AuthorizedSession(google.oauth2.credentials.Credentials(token,
  refresh_token=..., token_uri=..., client_id=..., client_secret=...))``. Its refresh
  always posts ``client_secret`` and refuses to run without one
  (google/oauth2/credentials.py: Credentials._perform_refresh_token), so it uses
  LocalIdP's confidential client. It has no token-update callback, so the
  harness persists ``credentials`` after each request whose token changed, as
  Google's samples do with ``creds.to_json()``.

Tokens travel between the harness and the peers as a plain dict:
``access_token``, ``refresh_token``, ``expires_at`` (epoch seconds), ``token_type``.
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import requests
from requests.auth import AuthBase

from bench._common import STUB_PREFIX, StubAdapter, stub_rotate_adapter

OURS = "requests-tokenrotate"
OURS_AUTH = "requests-tokenrotate (auth=)"
OAUTHLIB = "requests-oauthlib"
AUTHLIB = "Authlib"
GOOGLE = "google-auth"
STATIC = "static-bearer AuthBase"
PEERS = (OAUTHLIB, AUTHLIB, GOOGLE)

#: LocalIdP clients: public "cli" (no secret) and "confidential".
CLIENT_SECRETS = {"cli": None, "confidential": "s3cret-client"}
CLIENT_IDS = {
    OURS: "cli",
    OURS_AUTH: "cli",
    OAUTHLIB: "cli",
    AUTHLIB: "cli",
    GOOGLE: "confidential",
}

#: The stub clients' token endpoint: never called, their tokens stay fresh.
UNUSED_TOKEN_URL = "http://127.0.0.1:9/token"

Updater = Callable[[dict[str, Any]], None]
_UTC = datetime.timezone.utc


class StaticBearer(AuthBase):
    """The reference: a fixed ``Authorization: Bearer`` header, nothing else."""

    def __init__(self, access_token: str) -> None:
        self.value = "Bearer " + access_token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.value
        return r


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "requests",
        "urllib3",
        "requests-tokenrotate",
        "requests-oauthlib",
        "oauthlib",
        "Authlib",
        "google-auth",
        "httpx",
        "httpx-auth",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- the peers' token formats --------------------------------------------------------
def _epoch(expiry: datetime.datetime | None) -> float | None:
    return None if expiry is None else expiry.replace(tzinfo=_UTC).timestamp()


def _naive_utc(epoch: float | None) -> datetime.datetime | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=_UTC).replace(tzinfo=None)


def canonical(token: Any) -> dict[str, Any]:
    """A peer's token (a dict, or google Credentials) as the harness's plain dict."""
    if isinstance(token, dict):
        return {
            "access_token": token.get("access_token"),
            "refresh_token": token.get("refresh_token"),
            "expires_at": token.get("expires_at"),
            "token_type": token.get("token_type", "Bearer"),
        }
    return {
        "access_token": token.token,
        "refresh_token": token.refresh_token,
        "expires_at": _epoch(token.expiry),
        "token_type": "Bearer",
    }


def peer_token(answer: dict[str, Any], now: float) -> dict[str, Any]:
    """A token endpoint answer (LocalIdP.issue_tokens) as the harness's plain dict."""
    return {
        "access_token": answer["access_token"],
        "refresh_token": answer.get("refresh_token"),
        "expires_at": int(now + float(answer.get("expires_in", 3600))),
        "token_type": "Bearer",
    }


# -- building clients ----------------------------------------------------------------
def _oauthlib(token: dict[str, Any], token_url: str, on_update: Updater) -> requests.Session:
    from requests_oauthlib import OAuth2Session

    client_id = CLIENT_IDS[OAUTHLIB]
    data = {k: v for k, v in token.items() if v is not None}
    return OAuth2Session(
        client_id,
        token=data,
        auto_refresh_url=token_url,
        auto_refresh_kwargs={"client_id": client_id},
        token_updater=lambda new: on_update(canonical(new)),
    )


def _authlib(token: dict[str, Any], token_url: str, on_update: Updater) -> requests.Session:
    from authlib.integrations.requests_client import OAuth2Session

    def update(new: Any, refresh_token: Any = None, access_token: Any = None) -> None:
        on_update(canonical(new))

    data = {k: v for k, v in token.items() if v is not None}
    session: requests.Session = OAuth2Session(
        CLIENT_IDS[AUTHLIB], token=data, token_endpoint=token_url, update_token=update
    )
    return session


def _google(token: dict[str, Any], token_url: str, on_update: Updater) -> requests.Session:
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2.credentials import Credentials

    client_id = CLIENT_IDS[GOOGLE]

    class PersistingSession(AuthorizedSession):  # type: ignore[misc]
        """Persist the credentials after a request that changed the token."""

        _persist_lock = threading.Lock()

        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            before = self.credentials.token
            try:
                return super().request(*args, **kwargs)  # type: ignore[no-any-return]
            finally:
                if self.credentials.token != before and not kwargs.get(
                    "_credential_refresh_attempt"
                ):
                    with self._persist_lock:
                        on_update(canonical(self.credentials))

    credentials = Credentials(
        token["access_token"],
        refresh_token=token.get("refresh_token"),
        token_uri=token_url,
        client_id=client_id,
        client_secret=CLIENT_SECRETS[client_id],
        expiry=_naive_utc(token.get("expires_at")),
    )
    return PersistingSession(credentials)


_BUILDERS = {OAUTHLIB: _oauthlib, AUTHLIB: _authlib, GOOGLE: _google}


def _ignore(token: dict[str, Any]) -> None:
    pass


def peer_session(
    kind: str, token: dict[str, Any], token_url: str, on_update: Updater | None = None
) -> requests.Session:
    """A peer's session holding ``token``; ``on_update`` receives each refreshed token."""
    return _BUILDERS[kind](token, token_url, on_update or _ignore)


def ours_session(kind: str, source: Any, prefix: str) -> requests.Session:
    """Our client: the mounted adapter (``OURS``) or ``auth=`` (``OURS_AUTH``)."""
    import requests_tokenrotate as rt

    session = requests.Session()
    if kind == OURS:
        rt.mount(session, prefix, source)
    else:
        session.auth = rt.TokenRotateAuth(source, origins=prefix)
    return session


def stub_session(
    kind: str,
    *,
    access_token: str = "",
    token: dict[str, Any] | None = None,
    source: Any = None,
    token_url: str = UNUSED_TOKEN_URL,
) -> requests.Session:
    """A client of ``kind`` whose requests under :data:`STUB_PREFIX` never reach a socket."""
    if kind == OURS:
        import requests_tokenrotate as rt

        session = requests.Session()
        rt.mount(session, STUB_PREFIX, source)  # as users write it; then the same adapter
        session.mount(STUB_PREFIX, stub_rotate_adapter(source))  # without its socket
        return _no_environment(session)
    if kind == OURS_AUTH:
        import requests_tokenrotate as rt

        session = requests.Session()
        session.auth = rt.TokenRotateAuth(source, origins=STUB_PREFIX)
    elif kind == STATIC:
        session = requests.Session()
        session.auth = StaticBearer(access_token)
    else:
        assert token is not None
        session = peer_session(kind, token, token_url)
    session.mount(STUB_PREFIX, StubAdapter())
    return _no_environment(session)


def _no_environment(session: requests.Session) -> requests.Session:
    # With trust_env, every request scans os.environ for proxies and reads ~/.netrc:
    # tens of µs that depend on the environment, not on the library under test.
    session.trust_env = False
    return session


# -- stepping the peers' clocks ------------------------------------------------------
@contextlib.contextmanager
def peer_clocks(clock: Callable[[], float]) -> Iterator[None]:
    """Make the peers read ``clock`` instead of the wall clock.

    None of them takes a clock argument: oauthlib and Authlib call ``time.time()``
    (oauthlib/oauth2/rfc6749/clients/base.py: Client.add_token, parameters.py:
    parse_expires; authlib/oauth2/rfc6749/wrappers.py: OAuth2Token.is_expired) and
    google-auth calls ``_helpers.utcnow()`` (google/auth/credentials.py:
    Credentials.expired). This swaps those module attributes for the duration.
    """
    fake_time = types.SimpleNamespace(time=clock)
    patches: list[tuple[Any, str, Any]] = []
    for module_name in (
        "oauthlib.oauth2.rfc6749.clients.base",
        "oauthlib.oauth2.rfc6749.parameters",
        "authlib.oauth2.rfc6749.wrappers",
    ):
        __import__(module_name)
        patches.append((sys.modules[module_name], "time", fake_time))
    import google.auth._helpers as google_helpers

    patches.append((google_helpers, "utcnow", lambda: _naive_utc(clock())))
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
