"""Signing keys, refresh token records, and minting and validating LocalIdP's tokens."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

from ._replies import _InvalidToken

if TYPE_CHECKING:
    import threading
    from collections import deque
    from collections.abc import Callable, Mapping


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


def _numeric_date(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class _TokenMint:
    """The token state of :class:`LocalIdP` and the methods that mint and check tokens.

    The attributes are set by ``LocalIdP.__init__`` and declared here so that the endpoint
    mixins type-check. Callers hold ``self._lock``.
    """

    access_token_lifetime: float
    algorithm: str
    clients: dict[str, str | None]
    issuer_path: str
    reuse_policy: str
    token_latency: float
    include_expires_in: bool
    retry_after: str
    discovery_overrides: dict[str, Any]
    token_requests: list[dict[str, str]]
    resource_requests: list[dict[str, Any]]
    token_calls: int
    refresh_calls: int
    invalid_grant: int
    discovery_calls: int
    resource_calls: int
    unauthorized: int
    client_credentials_calls: int
    password_calls: int
    jwt_bearer_calls: int
    token_exchange_calls: int
    jwks_calls: int
    _clock: Callable[[], float]
    _lock: threading.Lock
    _stopping: threading.Event
    _key: _SigningKey
    _refresh: dict[str, _RefreshRecord]
    _families: int
    _revoked_families: set[int]
    _jti_family: dict[str, int]
    _failures: dict[str, deque[str]]
    _flaky: dict[str, int]

    if TYPE_CHECKING:

        @property
        def issuer(self) -> str: ...

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
