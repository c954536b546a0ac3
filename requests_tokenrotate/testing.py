"""A real loopback OAuth2/OIDC identity provider for tests.

:class:`LocalIdP` runs a :class:`http.server.ThreadingHTTPServer` on ``127.0.0.1`` (an
ephemeral port, HTTP/1.1 keep-alive) in a background thread. It serves:

* ``POST {issuer}/token``: the RFC 6749 token endpoint with single-use refresh token rotation,
  client credentials, password, JWT bearer (RFC 7523) and token exchange (RFC 8693) grants;
* ``GET {issuer}/.well-known/openid-configuration`` and ``.../oauth-authorization-server``
  (also at the RFC 8414 section 3.1 location) plus ``GET {issuer}/jwks``;
* a bearer-protected resource (RFC 6750) at ``{url}/resource``, with helper paths
  ``/resource/admin``, ``/forbidden``, ``/flaky503``, ``/redirect`` and ``/status/<code>``.

Faults are injected with :meth:`LocalIdP.fail_next`, and server-side state is changed with
:meth:`~LocalIdP.revoke`, :meth:`~LocalIdP.revoke_all` and :meth:`~LocalIdP.rotate_signing_key`.
It depends on the standard library and PyJWT; ``cryptography`` is imported only for RS256.
Tokens and secrets are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import logging
import math
import re
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import parse_qs, parse_qsl, unquote_plus, urlsplit

import jwt

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from types import TracebackType

__all__ = ["DEFAULT_CLIENTS", "FAIL_MODES", "LocalIdP"]

logger = logging.getLogger(__name__)

DEFAULT_CLIENTS: Final[Mapping[str, str | None]] = MappingProxyType(
    {"cli": None, "confidential": "s3cret-client"}
)
DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 60.0
DEFAULT_HANG_SECONDS: Final = 5.0
DEFAULT_STOP_TIMEOUT: Final = 5.0
FAIL_MODES: Final = frozenset(
    {"500", "503", "429", "html", "hang", "reset", "invalid_json", "no_access_token"}
)
GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
TYPE_ACCESS: Final = "urn:ietf:params:oauth:token-type:access_token"
TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"

_COUNTERS: Final = (
    "token_calls", "refresh_calls", "invalid_grant", "discovery_calls", "resource_calls",
    "unauthorized", "client_credentials_calls", "password_calls", "jwt_bearer_calls",
    "token_exchange_calls", "jwks_calls",
)  # fmt: skip
_FAIL_ENDPOINTS: Final = ("token", "discovery", "resource")
_MULTI_PARAMS: Final = frozenset({"audience", "resource"})  # RFC 8693 2.1, RFC 8707 2
_NO_STORE: Final = MappingProxyType({"Cache-Control": "no-store", "Pragma": "no-cache"})
_MAX_FORM: Final = 1 << 20
_MAX_LINE: Final = 8192
_READ_SIZE: Final = 1 << 16
_CHUNK_SIZE_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
# struct linger {l_onoff, l_linger}: on with a zero timeout makes close() send a RST.
_LINGER_RESET: Final = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)


class _OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status


class _BadRequest(Exception):
    """The HTTP framing of a request was unusable; the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _InvalidToken(Exception):
    """An access token failed validation; ``str(exc)`` is safe to send and log."""


class _Reply(NamedTuple):
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = MappingProxyType({})
    action: str = ""  # "hang" or "reset": answer nothing


@dataclass(frozen=True, slots=True)
class _SigningKey:
    kid: str
    private: Any
    public: Any
    jwk: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(slots=True)
class _RefreshRecord:
    family: int
    client_id: str
    subject: str
    scope: str | None
    state: str = "live"  # "live", "consumed" or "revoked"


def _json_reply(
    status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def _error_reply(exc: _OAuthError) -> _Reply:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="LocalIdP"'  # RFC 6749 5.2 invalid_client
    payload = {"error": exc.error, "error_description": exc.description}
    return _json_reply(exc.status, payload, headers)


def _failure_reply(mode: str) -> _Reply:
    if mode in ("hang", "reset"):
        return _Reply(0, action=mode)
    if mode == "html":
        return _Reply(200, b"<html>Proxy error</html>", "text/html; charset=utf-8")
    if mode == "invalid_json":
        return _Reply(200, b'{"access_token": <garbage')
    if mode == "no_access_token":
        return _json_reply(200, {"token_type": "Bearer"})
    error = "server_error" if mode == "500" else "temporarily_unavailable"
    return _json_reply(int(mode), {"error": error})


def _new_signing_key(algorithm: str) -> _SigningKey:
    kid = secrets.token_hex(8)
    if algorithm == "HS256":
        secret = secrets.token_bytes(32)
        return _SigningKey(kid, secret, secret)
    try:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jwt.algorithms import RSAAlgorithm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LocalIdP(algorithm='RS256') needs the 'cryptography' package") from exc
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = dict(RSAAlgorithm.to_jwk(private.public_key(), as_dict=True))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return _SigningKey(kid, private, private.public_key(), jwk)


def _identify_client(
    form: Mapping[str, str], authorization: str | None
) -> tuple[str, str, str | None, str | None]:
    """Return ``(client_id, auth_method, secret, problem)`` without validating them."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", "client_secret_basic", None, "malformed Basic credentials"
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            return "", "client_secret_basic", None, "malformed Basic credentials"
        # RFC 6749 2.3.1: both halves are form-urlencoded before Basic encoding.
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        problem = None
        if "client_secret" in form:
            problem = "more than one client authentication method"
        elif form.get("client_id", client_id) != client_id:
            problem = "client_id does not match the Basic credentials"
        return client_id, "client_secret_basic", secret, problem
    if "client_secret" in form:
        return form.get("client_id", ""), "client_secret_post", form["client_secret"], None
    return form.get("client_id", ""), "none", None, None


def _numeric_date(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def _is_protected(path: str) -> bool:
    return path in ("/resource", "/forbidden", "/flaky503") or path.startswith("/resource/")


class LocalIdP:
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
    :raises ValueError: An unknown ``algorithm``, ``reuse_policy`` or a bad ``issuer_path``.

    :ivar hang_seconds: How long the ``"hang"`` fault waits before closing (default 5 s).
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
        body) and ``"no_access_token"`` (200 ``{"token_type": "Bearer"}``). Faults queue up.

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

    # -- tokens (callers hold self._lock) ------------------------------------------------

    def _require_started(self) -> None:
        if self._port is None:
            raise RuntimeError("LocalIdP is not started")

    def _mint(
        self,
        client_id: str,
        subject: str,
        scope: str | None,
        audience: list[str],
        lifetime: float | None,
        family: int | None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, float]:
        now = self._clock()
        lifetime = self.access_token_lifetime if lifetime is None else float(lifetime)
        jti = secrets.token_urlsafe(12)
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject, "iat": _numeric_date(now),
            "exp": _numeric_date(now + lifetime), "jti": jti, "client_id": client_id,
        }  # fmt: skip
        if audience:
            claims["aud"] = audience[0] if len(audience) == 1 else audience
        if scope:
            claims["scope"] = scope
        claims.update(extra or {})
        token = jwt.encode(
            claims, self._key.private, algorithm=self.algorithm, headers={"kid": self._key.kid}
        )
        if family is not None:
            self._jti_family[jti] = family
        return token, lifetime

    def _token_json(
        self, access: str, lifetime: float, refresh: str | None, scope: str | None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
        if self.include_expires_in:
            answer["expires_in"] = max(0, math.ceil(lifetime))
        if refresh is not None:
            answer["refresh_token"] = refresh
        if scope:
            answer["scope"] = scope
        return answer

    def _new_refresh(self, family: int, client_id: str, subject: str, scope: str | None) -> str:
        token = secrets.token_urlsafe(32)
        self._refresh[token] = _RefreshRecord(family, client_id, subject, scope)
        return token

    def _new_login(
        self,
        client_id: str,
        subject: str,
        scope: str | None,
        lifetime: float | None,
        audience: list[str],
    ) -> dict[str, Any]:
        self._families += 1
        family = self._families
        refresh = self._new_refresh(family, client_id, subject, scope)
        access, lifetime = self._mint(client_id, subject, scope, audience, lifetime, family)
        return self._token_json(access, lifetime, refresh, scope)

    def _verify(self, token: str) -> dict[str, Any]:
        """Validate an access token against the current key and clock."""
        key = self._key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise _InvalidToken("The access token is malformed") from None
        if kid != key.kid:
            raise _InvalidToken("The access token was signed with an unknown key")
        try:
            claims = jwt.decode(
                token, key.public, algorithms=[self.algorithm],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "verify_aud": False, "require": ["exp", "iss", "sub", "jti"]},
            )  # fmt: skip  # the injected clock checks exp below
        except jwt.InvalidTokenError:
            raise _InvalidToken("The access token signature or claims are invalid") from None
        if claims["iss"] != self.issuer:
            raise _InvalidToken("The access token was issued by another issuer")
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp <= self._clock():
            raise _InvalidToken("The access token expired")
        family = self._jti_family.get(str(claims["jti"]))
        if family is not None and family in self._revoked_families:
            raise _InvalidToken("The access token was revoked")
        return claims

    # -- token endpoint ------------------------------------------------------------------

    def _handle_token(
        self, command: str, body: bytes, content_type: str, authorization: str | None
    ) -> _Reply:
        if command != "POST":
            return _json_reply(405, {"error": "invalid_request"}, {"Allow": "POST"})
        try:
            pairs: list[tuple[str, str]] | None = parse_qsl(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            pairs = None
        form: dict[str, str] = {}
        for name, value in pairs or []:
            form[name] = f"{form[name]} {value}" if name in form else value
        client_id, method, secret, problem = _identify_client(form, authorization)
        with self._lock:
            self.token_calls += 1
            self.token_requests.append({**form, "_client_id": client_id, "_auth_method": method})
            mode = self._failures["token"].popleft() if self._failures["token"] else None
        if self.token_latency > 0:
            self._stopping.wait(self.token_latency)
        if mode is not None:
            logger.debug("LocalIdP: injected %r fault at the token endpoint", mode)
            return _failure_reply(mode)
        with self._lock:
            try:
                if pairs is None or content_type.split(";")[0].strip().lower() != (
                    "application/x-www-form-urlencoded"
                ):
                    raise _OAuthError("invalid_request", "The body must be a UTF-8 form")
                self._authenticate(client_id, secret, problem)
                repeated = self._repeated(pairs)
                if repeated:
                    raise _OAuthError("invalid_request", f"Repeated parameter {repeated}")
                answer = self._grant(client_id, form, pairs)
            except _OAuthError as exc:
                if exc.error == "invalid_grant":
                    self.invalid_grant += 1
                logger.debug("LocalIdP: token endpoint answered %s", exc.error)
                return _error_reply(exc)
        return _json_reply(200, answer, _NO_STORE)

    @staticmethod
    def _repeated(pairs: list[tuple[str, str]]) -> str:
        seen: set[str] = set()
        for name, _ in pairs:  # RFC 6749 3.2: parameters must not be included more than once
            if name in seen and name not in _MULTI_PARAMS:
                return name
            seen.add(name)
        return ""

    def _authenticate(self, client_id: str, secret: str | None, problem: str | None) -> None:
        if problem == "more than one client authentication method":
            raise _OAuthError("invalid_request", "Use only one client authentication method")
        if problem is not None or client_id not in self.clients:
            raise _OAuthError("invalid_client", "Client authentication failed", status=401)
        expected = self.clients[client_id]
        if expected is None:
            if secret is not None:
                raise _OAuthError("invalid_client", "Public clients have no secret", status=401)
        elif secret is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            raise _OAuthError("invalid_client", "Client authentication failed", status=401)

    def _grant(
        self, client_id: str, form: Mapping[str, str], pairs: list[tuple[str, str]]
    ) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        # RFC 8707 resource indicators and RFC 8693 audiences both end up in "aud".
        audience = list(dict.fromkeys(v for n, v in pairs if n in _MULTI_PARAMS))
        scope = form.get("scope") or None
        if grant == "refresh_token":
            return self._refresh_grant(client_id, form, audience)
        if grant == "client_credentials":
            if self.clients[client_id] is None:
                raise _OAuthError("unauthorized_client", "Public clients cannot use this grant")
            access, lifetime = self._mint(client_id, client_id, scope, audience, None, None)
            self.client_credentials_calls += 1
            return self._token_json(access, lifetime, None, scope)
        if grant == "password":
            if not form.get("username") or not form.get("password"):
                raise _OAuthError("invalid_grant", "The resource owner credentials are invalid")
            self.password_calls += 1
            return self._new_login(client_id, form["username"], scope, None, audience)
        if grant == GRANT_JWT_BEARER:
            claims, family = self._subject(form.get("assertion"), "assertion")
            scope = scope or claims.get("scope")
            access, lifetime = self._mint(client_id, claims["sub"], scope, audience, None, family)
            self.jwt_bearer_calls += 1
            return self._token_json(access, lifetime, None, scope)
        if grant == GRANT_TOKEN_EXCHANGE:
            return self._exchange_grant(client_id, form, audience, scope)
        if not grant:
            raise _OAuthError("invalid_request", "grant_type is required")
        raise _OAuthError("unsupported_grant_type", "This grant type is not supported")

    def _refresh_grant(
        self, client_id: str, form: Mapping[str, str], audience: list[str]
    ) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise _OAuthError("invalid_request", "refresh_token is required")
        record = self._refresh.get(token)
        if record is None or record.client_id != client_id:
            raise _OAuthError("invalid_grant", "The refresh token is unknown or not yours")
        if record.state == "consumed":
            if self.reuse_policy == "revoke_family":
                self._revoked_families.add(record.family)
            logger.debug("LocalIdP: refresh token %s reused", _fingerprint(token))
            raise _OAuthError("invalid_grant", "The refresh token was already used")
        if record.state == "revoked" or record.family in self._revoked_families:
            raise _OAuthError("invalid_grant", "The refresh token was revoked")
        scope = record.scope
        if "scope" in form:  # RFC 6749 6: narrowing only; the new refresh token keeps the grant
            requested = form["scope"].split()
            if not set(requested) <= set((record.scope or "").split()):
                raise _OAuthError("invalid_scope", "The requested scope exceeds the grant")
            scope = " ".join(requested) or None
        record.state = "consumed"
        refresh = self._new_refresh(record.family, client_id, record.subject, record.scope)
        subject, family = record.subject, record.family
        access, lifetime = self._mint(client_id, subject, scope, audience, None, family)
        self.refresh_calls += 1
        return self._token_json(access, lifetime, refresh, scope)

    def _subject(self, token: str | None, name: str) -> tuple[dict[str, Any], int | None]:
        if not token:
            raise _OAuthError("invalid_request", f"{name} is required")
        try:
            claims = self._verify(token)
        except _InvalidToken as exc:
            raise _OAuthError("invalid_grant", f"The {name} is invalid: {exc}") from None
        # Derived tokens join the subject's family, so revoke_family reaches them as well.
        return claims, self._jti_family.get(str(claims["jti"]))

    def _exchange_grant(
        self, client_id: str, form: Mapping[str, str], audience: list[str], scope: str | None
    ) -> dict[str, Any]:
        subject_type = form.get("subject_token_type")
        if subject_type is None:
            raise _OAuthError("invalid_request", "subject_token_type is required")
        if subject_type != TYPE_ACCESS:
            raise _OAuthError("invalid_request", "Unsupported subject_token_type")
        issued_type = form.get("requested_token_type") or TYPE_ACCESS
        if issued_type not in (TYPE_ACCESS, TYPE_JWT):
            raise _OAuthError("invalid_request", "Unsupported requested_token_type")
        claims, family = self._subject(form.get("subject_token"), "subject_token")
        extra: dict[str, Any] = {}
        if "actor_token" in form:  # RFC 8693 4.1: the acting party goes in "act"
            if form.get("actor_token_type") != TYPE_ACCESS:
                raise _OAuthError("invalid_request", "Unsupported actor_token_type")
            extra["act"] = {"sub": self._subject(form["actor_token"], "actor_token")[0]["sub"]}
        scope = scope or claims.get("scope")
        access, lifetime = self._mint(
            client_id, claims["sub"], scope, audience, None, family, extra
        )
        self.token_exchange_calls += 1
        return {**self._token_json(access, lifetime, None, scope), "issued_token_type": issued_type}

    # -- discovery and the protected resource --------------------------------------------

    def _route(
        self, command: str, path: str, query: str, authorization: str | None, length: int,
        digest: str,
    ) -> _Reply:  # fmt: skip
        issuer_path = self.issuer_path
        well_known = (
            f"{issuer_path}/.well-known/openid-configuration",
            f"{issuer_path}/.well-known/oauth-authorization-server",
            f"/.well-known/oauth-authorization-server{issuer_path}",  # RFC 8414 3.1
        )
        if path in well_known or path == f"{issuer_path}/jwks":
            if command not in ("GET", "HEAD"):
                return _json_reply(405, {"error": "method_not_allowed"}, {"Allow": "GET, HEAD"})
            return self._metadata(path.endswith("/jwks"))
        if _is_protected(path):
            return self._resource(command, path, query, authorization, length, digest)
        params = parse_qs(query)
        if path == "/redirect" and params.get("to"):
            return _json_reply(302, {}, {"Location": params["to"][0]})
        code = path.removeprefix("/status/")
        if path.startswith("/status/") and code.isdecimal() and 200 <= int(code) <= 599:
            body = b"" if int(code) in (204, 304) else b"{}"
            retry_after = params.get("retry_after")  # lets retry tests control Retry-After
            headers = {"Retry-After": retry_after[0]} if retry_after else {}
            return _Reply(int(code), body, headers=headers)
        return _json_reply(404, {"error": "not_found"})

    def _metadata(self, jwks: bool) -> _Reply:
        with self._lock:
            if jwks:
                self.jwks_calls += 1
                return _json_reply(200, {"keys": [self._key.jwk] if self._key.jwk else []})
            self.discovery_calls += 1
            mode = self._failures["discovery"].popleft() if self._failures["discovery"] else None
            overrides = dict(self.discovery_overrides)
        if mode is not None:
            return _failure_reply(mode)
        issuer = self.issuer
        document: dict[str, Any] = {
            "issuer": issuer,
            "token_endpoint": issuer + "/token",
            "jwks_uri": issuer + "/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "refresh_token", "client_credentials", "password", GRANT_JWT_BEARER,
                GRANT_TOKEN_EXCHANGE,
            ],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic", "client_secret_post", "none",
            ],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
        }  # fmt: skip
        for name, value in overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return _json_reply(200, document, {"Cache-Control": "max-age=3600"})

    def _resource(
        self, command: str, path: str, query: str, authorization: str | None, length: int,
        digest: str,
    ) -> _Reply:  # fmt: skip
        with self._lock:
            self.resource_calls += 1
            mode = self._failures["resource"].popleft() if self._failures["resource"] else None
            if mode is not None:
                reply = _failure_reply(mode)
            else:
                reply = self._protected(command, path, query, authorization, length, digest)
            if reply.status == 401:
                self.unauthorized += 1
            self.resource_requests.append({
                "method": command, "path": path, "authorization": authorization is not None,
                "length": length, "sha256": digest, "status": reply.status,
            })  # fmt: skip
        return reply

    def _protected(
        self, command: str, path: str, query: str, authorization: str | None, length: int,
        digest: str,
    ) -> _Reply:  # fmt: skip
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            payload = {"ok": False, "error_description": "A bearer token is required"}
            return _json_reply(401, payload, {"WWW-Authenticate": 'Bearer realm="local"'})
        try:
            claims = self._verify(credentials.strip())
        except _InvalidToken as exc:
            challenge = f'Bearer error="invalid_token", error_description="{exc}"'
            payload = {"ok": False, "error": "invalid_token", "error_description": str(exc)}
            return _json_reply(401, payload, {"WWW-Authenticate": challenge})
        if path == "/resource/admin" and "admin" not in str(claims.get("scope", "")).split():
            challenge = 'Bearer error="insufficient_scope", scope="admin"'
            payload = {"ok": False, "error": "insufficient_scope"}
            return _json_reply(403, payload, {"WWW-Authenticate": challenge})
        if path == "/forbidden":
            return _json_reply(403, {"ok": False, "error": "forbidden"})
        answer: dict[str, Any] = {"ok": True, "sub": claims["sub"], "path": path}
        if path == "/flaky503":
            params = parse_qs(query)
            limit, key = params.get("n", ["1"])[0], params.get("id", [""])[0]
            attempt = self._flaky[key] = self._flaky.get(key, 0) + 1
            if attempt <= (int(limit) if limit.isdecimal() else 1):
                return _json_reply(503, {"ok": False, "attempt": attempt})
            answer["attempt"] = attempt
        if command in ("POST", "PUT", "PATCH"):
            answer.update(length=length, sha256=digest)
        return _json_reply(200, answer)


class _Server(ThreadingHTTPServer):
    """Loopback HTTP server that tracks open connections so that stop() can close them."""

    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients must not hit SYN retransmits

    def __init__(self, idp: LocalIdP) -> None:
        self.idp = idp
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves an FQDN, which can stall on a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self.idp._idle:
                self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self.idp._idle:
                self.connections.discard(request)
                self.idp._idle.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside socketserver's except block; log the type only, never the message.
        logger.debug("LocalIdP: connection failed with %s", type(sys.exc_info()[1]).__name__)

    def close_connections(self, timeout: float) -> None:
        with self.idp._idle:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # unblocks keep-alive reads
            if not self.idp._idle.wait_for(lambda: not self.connections, timeout):
                logger.warning("LocalIdP: %d connections still open", len(self.connections))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalIdP/1.0"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def do_GET(self) -> None:
        """Dispatch every method through one router."""
        idp = self.server.idp
        url = urlsplit(self.path)
        try:
            if url.path == idp.issuer_path + "/token":
                body = b"".join(self._body(_MAX_FORM))
                content_type = self.headers.get("Content-Type", "")
                reply = idp._handle_token(
                    self.command, body, content_type, self.headers.get("Authorization")
                )
            else:
                sha, length = hashlib.sha256(), 0
                for chunk in self._body(None):
                    sha.update(chunk)
                    length += len(chunk)
                reply = idp._route(
                    self.command, url.path, url.query, self.headers.get("Authorization"),
                    length, sha.hexdigest(),
                )  # fmt: skip
        except _BadRequest as exc:
            self.close_connection = True
            payload = {"error": "invalid_request", "error_description": str(exc)}
            reply = _json_reply(exc.status, payload)
        self._answer(reply)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _body(self, limit: int | None) -> Iterator[bytes]:
        """Yield the request body, decoding ``Transfer-Encoding: chunked`` (RFC 9112 7.1)."""
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if [c.strip().lower() for c in encoding.split(",") if c.strip()] != ["chunked"]:
                raise _BadRequest(501, "Only Transfer-Encoding: chunked is supported")
            if "Content-Length" in self.headers:  # RFC 9112 6.1: answer, then close
                self.close_connection = True
            sizes = self._chunk_sizes()
        else:
            text = self.headers.get("Content-Length", "0").strip()
            if not text.isdecimal() or not text.isascii():
                raise _BadRequest(400, "Invalid Content-Length")
            sizes = iter([int(text)])
        total = 0
        for size in sizes:
            total += size
            if limit is not None and total > limit:
                raise _BadRequest(413, "Request body too large")
            while size:
                data = self.rfile.read(min(size, _READ_SIZE))
                if not data:
                    raise _BadRequest(400, "Request body truncated")
                size -= len(data)
                yield data
            if encoding is not None and self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise _BadRequest(400, "Missing CRLF after a chunk")

    def _chunk_sizes(self) -> Iterator[int]:
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            size = line.split(b";", 1)[0].strip()
            if len(line) > _MAX_LINE or not _CHUNK_SIZE_RE.fullmatch(size):
                raise _BadRequest(400, "Invalid chunk size line")
            if int(size, 16) == 0:
                break
            yield int(size, 16)
        while True:  # trailer section, ignored
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return
            if len(line) > _MAX_LINE:
                raise _BadRequest(400, "Trailer line too long")

    def _answer(self, reply: _Reply) -> None:
        if reply.action == "hang":
            self.server.idp._stopping.wait(self.server.idp.hang_seconds)
            self.close_connection = True
            return
        if reply.action == "reset":
            self._reset()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    def _reset(self) -> None:
        """Close the connection abortively: SO_LINGER 0 makes close() send a RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the peer may already be gone
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.rfile.close()  # drops the makefile() reference, so close() really closes
        self.wfile.close()
        self.connection.close()
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()  # finish() flushes and closes these

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the full request line: a query string could carry a credential.
        logger.debug("LocalIdP %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


if _HAVE_PYTEST:

    @pytest.fixture
    def local_idp(request: pytest.FixtureRequest) -> Iterator[LocalIdP]:
        """Yield a started :class:`LocalIdP` and stop it after the test.

        Make it available to a test suite from its ``conftest.py``::

            from requests_tokenrotate.testing import local_idp  # noqa: F401

        Constructor arguments can be passed by indirect parametrization::

            @pytest.mark.parametrize("local_idp", [{"algorithm": "RS256"}], indirect=True)
            def test_rs256(local_idp): ...
        """
        kwargs: dict[str, Any] = getattr(request, "param", None) or {}
        with LocalIdP(**kwargs) as idp:
            yield idp

    __all__ += ["local_idp"]
