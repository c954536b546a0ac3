"""LocalIdP itself: configuration, lifecycle, addresses, counters and server-side controls."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from ._http import _Server
from ._login import _LoginEndpoints
from ._routes import _Routes
from ._tokens import _new_signing_key

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from ._tokens import _RefreshRecord

logger = logging.getLogger(__name__)

DEFAULT_CLIENTS: Final[Mapping[str, str | None]] = MappingProxyType(
    {"cli": None, "confidential": "s3cret-client"}
)
DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 60.0
DEFAULT_HANG_SECONDS: Final = 5.0
DEFAULT_STOP_TIMEOUT: Final = 5.0
FAIL_MODES: Final = frozenset({
    "500", "503", "429", "html", "hang", "reset", "invalid_json", "no_access_token",
    "drip", "huge", "endless", "bare_400", "echo", "503_retry_after", "429_retry_after",
})  # fmt: skip
DEFAULT_DRIP_SECONDS: Final = 0.2

_COUNTERS: Final = (
    "token_calls", "refresh_calls", "invalid_grant", "discovery_calls", "resource_calls",
    "unauthorized", "client_credentials_calls", "password_calls", "jwt_bearer_calls",
    "token_exchange_calls", "jwks_calls",
    "device_authorizations", "device_polls", "authorizations", "revocations",
)  # fmt: skip
_FAIL_ENDPOINTS: Final = ("token", "discovery", "resource", "revocation")


class LocalIdP(_LoginEndpoints, _Routes):
    """A loopback OAuth2/OIDC server with a protected resource, for tests and benchmarks.

    Example::

        import requests
        from requests_tokenrotate.testing import LocalIdP

        with LocalIdP(access_token_lifetime=30) as idp:
            tokens = idp.issue_tokens(scope="read")
            bearer = {"Authorization": "Bearer " + tokens["access_token"]}
            assert requests.get(idp.resource_url, headers=bearer).json()["ok"]
            form = {"grant_type": "refresh_token", "client_id": "cli",
                    "refresh_token": tokens["refresh_token"]}
            assert requests.post(idp.token_url, data=form).status_code == 200
            assert requests.post(idp.token_url, data=form).status_code == 400  # reused
            assert idp.refresh_calls == 1 and idp.invalid_grant == 1

    Counters are plain ``int`` attributes, updated under one lock: ``token_calls`` (every
    request to the token endpoint, failed or not), ``refresh_calls``,
    ``client_credentials_calls``, ``password_calls``, ``jwt_bearer_calls`` and
    ``token_exchange_calls`` (successful grants), ``invalid_grant`` (``invalid_grant``
    answers), ``discovery_calls``, ``jwks_calls``, ``resource_calls`` (requests to
    ``/resource*``, ``/forbidden`` and ``/flaky503``) and ``unauthorized`` (their 401 answers).

    :param access_token_lifetime: Lifetime of issued access tokens, in seconds.
    :param algorithm: ``"HS256"`` (random secret) or ``"RS256"`` (needs ``cryptography``).
    :param clients: ``client_id`` to secret; ``None`` marks a public client. Defaults to
        :data:`DEFAULT_CLIENTS`: public ``"cli"`` and ``"confidential"`` / ``"s3cret-client"``.
    :param issuer_path: Path appended to :attr:`url` to form the issuer, such as ``"/o"``.
    :param reuse_policy: ``"strict"`` answers ``invalid_grant`` to a reused refresh token;
        ``"revoke_family"`` also revokes every refresh and access token of that login.
    :param token_latency: Seconds the token endpoint waits before answering.
    :param clock: Returns epoch seconds; used for ``iat``/``exp`` and to validate tokens.
    :param include_expires_in: Send ``expires_in``; if false, clients must read ``exp``.
    :param port: The loopback port to listen on (default 0: an ephemeral one). A fixed
        port lets a test point a client at a server that is not started yet (refused).
    :raises ValueError: An unknown ``algorithm``, ``reuse_policy`` or a bad ``issuer_path``.

    :ivar hang_seconds: How long the ``"hang"`` fault waits before closing (default 5 s).
    :ivar drip_seconds: The pause before each byte of the ``"drip"`` fault (default 0.2 s).
    :ivar retry_after: The ``Retry-After`` value of the ``"503_retry_after"`` and
        ``"429_retry_after"`` faults (default ``"1"``; an HTTP-date works too).
    :ivar discovery_overrides: Merged into the discovery document; ``None`` removes a key.
    :ivar token_requests: Every token endpoint form, decoded, plus ``"_client_id"`` and
        ``"_auth_method"`` (``client_secret_basic``, ``client_secret_post`` or ``none``).
    :ivar resource_requests: ``method``, ``path``, ``authorization`` (whether the header was
        present), ``length``, ``sha256`` and ``status`` of each protected resource request.
    """

    def __init__(
        self,
        *,
        access_token_lifetime: float = DEFAULT_ACCESS_TOKEN_LIFETIME,
        algorithm: str = "HS256",
        clients: Mapping[str, str | None] | None = None,
        issuer_path: str = "",
        reuse_policy: str = "strict",
        token_latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        include_expires_in: bool = True,
        port: int = 0,
    ) -> None:
        if algorithm not in ("HS256", "RS256"):
            raise ValueError(f"algorithm must be 'HS256' or 'RS256', not {algorithm!r}")
        if reuse_policy not in ("strict", "revoke_family"):
            raise ValueError(f"reuse_policy must be 'strict' or 'revoke_family': {reuse_policy!r}")
        if issuer_path and (not issuer_path.startswith("/") or "?" in issuer_path):
            raise ValueError(f"issuer_path must start with '/': {issuer_path!r}")
        self.access_token_lifetime = float(access_token_lifetime)
        self.algorithm = algorithm
        self.clients: dict[str, str | None] = dict(DEFAULT_CLIENTS if clients is None else clients)
        self.issuer_path = issuer_path.rstrip("/")
        self.reuse_policy = reuse_policy
        self.token_latency = float(token_latency)
        self.include_expires_in = include_expires_in
        self.hang_seconds = DEFAULT_HANG_SECONDS
        self.drip_seconds = DEFAULT_DRIP_SECONDS
        self.retry_after = "1"
        self.bind_port = port
        self.discovery_overrides: dict[str, Any] = {}
        self.token_requests: list[dict[str, str]] = []
        self.resource_requests: list[dict[str, Any]] = []
        self.token_calls = self.refresh_calls = self.invalid_grant = 0
        self.discovery_calls = self.resource_calls = self.unauthorized = 0
        self.client_credentials_calls = self.password_calls = self.jwt_bearer_calls = 0
        self.token_exchange_calls = self.jwks_calls = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # same lock; signals closed connections
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._key = _new_signing_key(algorithm)
        self._refresh: dict[str, _RefreshRecord] = {}
        self._families = 0
        self._revoked_families: set[int] = set()
        self._jti_family: dict[str, int] = {}
        self._failures: dict[str, deque[str]] = {name: deque() for name in _FAIL_ENDPOINTS}
        self._flaky: dict[str, int] = {}
        self._init_login()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalIdP:
        """Bind ``127.0.0.1`` on an ephemeral port and serve in a daemon thread.

        A stopped server may be started again; it then listens on a new port.

        :returns: ``self``, so ``idp = LocalIdP().start()`` works.
        :raises RuntimeError: The server is already running.
        """
        if self._server is not None:
            raise RuntimeError("LocalIdP is already started")
        self._stopping.clear()
        server = _Server(self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"LocalIdP-{self._port}", daemon=True,
        )  # fmt: skip
        self._thread.start()
        logger.debug("LocalIdP listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and wait for handler threads (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes "hang" faults and token_latency waits
        server.shutdown()
        server.server_close()
        thread.join()
        server.close_connections(DEFAULT_STOP_TIMEOUT)
        logger.debug("LocalIdP on port %s stopped", self._port)
        self._server = self._thread = self._port = None

    def __enter__(self) -> LocalIdP:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"<LocalIdP {where} {self.algorithm}>"

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``.

        :raises RuntimeError: The server is not started.
        """
        if self._port is None:
            raise RuntimeError("LocalIdP is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def issuer(self) -> str:
        """:attr:`url` plus ``issuer_path``; the ``iss`` of every token."""
        return self.url + self.issuer_path

    @property
    def token_url(self) -> str:
        """The token endpoint, ``{issuer}/token``."""
        return self.issuer + "/token"

    @property
    def discovery_url(self) -> str:
        """``{issuer}/.well-known/openid-configuration``."""
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        """``{issuer}/jwks``: the public key for RS256, an empty key set for HS256."""
        return self.issuer + "/jwks"

    @property
    def resource_url(self) -> str:
        """The bearer-protected resource, ``{url}/resource``."""
        return self.url + "/resource"

    # -- seeding and server-side controls ------------------------------------------------

    def issue_tokens(
        self,
        client_id: str = "cli",
        *,
        scope: str | None = None,
        subject: str = "user",
        lifetime: float | None = None,
    ) -> dict[str, Any]:
        """Log ``subject`` in without a browser and return a token endpoint style answer.

        This starts a new token family (see ``reuse_policy``) and is not counted as a call.

        :param lifetime: Access token lifetime in seconds (default ``access_token_lifetime``);
            a negative value issues an already expired token.
        :returns: ``access_token``, ``token_type``, ``expires_in``, ``refresh_token``, ``scope``.
        :raises ValueError: ``client_id`` is not a configured client.
        :raises RuntimeError: The server is not started (the issuer is still unknown).
        """
        if client_id not in self.clients:
            raise ValueError(f"unknown client_id {client_id!r}")
        self._require_started()
        with self._lock:
            return self._new_login(client_id, subject, scope or None, lifetime, [])

    def revoke(self, refresh_token: str) -> None:
        """Revoke one refresh token, so using it answers ``invalid_grant`` (unknown: no-op)."""
        with self._lock:
            record = self._refresh.get(refresh_token)
            if record is not None:
                record.state = "revoked"

    def revoke_all(self) -> None:
        """Revoke every refresh token issued so far."""
        with self._lock:
            for record in self._refresh.values():
                record.state = "revoked"

    def rotate_signing_key(self) -> None:
        """Replace the signing key: every access token issued so far fails with 401."""
        key = _new_signing_key(self.algorithm)
        with self._lock:
            self._key = key

    def fail_next(self, n: int = 1, mode: str = "500", *, endpoint: str = "token") -> None:
        """Make the next ``n`` calls to ``endpoint`` fail in the given ``mode``.

        Modes: ``"500"``, ``"503"``, ``"429"`` (JSON error with that status), ``"html"``
        (200 ``text/html``), ``"hang"`` (wait :attr:`hang_seconds`, then close without an
        answer), ``"reset"`` (abortive close, RST), ``"invalid_json"`` (200 with a broken JSON
        body) and ``"no_access_token"`` (200 ``{"token_type": "Bearer"}``). Hostile servers:
        ``"drip"`` (a valid token answer, one byte per :attr:`drip_seconds`), ``"huge"`` (a
        2 MiB token answer), ``"endless"`` (a chunked body that never ends, up to 64 MiB),
        ``"bare_400"`` (400, empty body), ``"echo"`` (token endpoint only: a 400 whose
        ``error_description`` and ``error_uri`` quote every sent value, secrets included),
        ``"503_retry_after"`` and ``"429_retry_after"`` (with :attr:`retry_after`). Faults
        queue up.

        :param endpoint: ``"token"``, ``"discovery"`` or ``"resource"`` (the protected paths,
            checked before authentication).
        :raises ValueError: Unknown ``mode`` or ``endpoint``, or a negative ``n``.
        """
        if mode not in FAIL_MODES:
            raise ValueError(f"mode must be one of {sorted(FAIL_MODES)}, not {mode!r}")
        if endpoint not in _FAIL_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {_FAIL_ENDPOINTS}, not {endpoint!r}")
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            self._failures[endpoint].extend([mode] * n)

    def counters(self) -> dict[str, int]:
        """Return a consistent snapshot of every counter."""
        with self._lock:
            return {name: getattr(self, name) for name in _COUNTERS}

    def reset_counters(self) -> None:
        """Zero every counter and clear :attr:`token_requests` and :attr:`resource_requests`."""
        with self._lock:
            for name in _COUNTERS:
                setattr(self, name, 0)
            self.token_requests.clear()
            self.resource_requests.clear()

    def _require_started(self) -> None:
        if self._port is None:
            raise RuntimeError("LocalIdP is not started")
