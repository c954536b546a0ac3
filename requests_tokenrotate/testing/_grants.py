"""The LocalIdP token endpoint: client authentication and the grants (RFC 6749, 7523, 8693)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote_plus

from ._replies import (
    _NO_STORE,
    _echo_reply,
    _error_reply,
    _failure_reply,
    _InvalidToken,
    _json_reply,
    _OAuthError,
    _Reply,
)
from ._tokens import _TokenMint

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
TYPE_ACCESS: Final = "urn:ietf:params:oauth:token-type:access_token"
TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"
_MULTI_PARAMS: Final = frozenset({"audience", "resource"})  # RFC 8693 2.1, RFC 8707 2


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


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


class _TokenEndpoint(_TokenMint):
    """``POST {issuer}/token``: parse the form, authenticate the client, run the grant."""

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
            if mode == "echo":
                return _echo_reply(form, secret)
            return _failure_reply(mode, retry_after=self.retry_after)
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
