"""Every LocalIdP path except the token endpoint: discovery, JWKS and the protected resource."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from ._grants import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE
from ._login import GRANT_DEVICE_CODE
from ._replies import _failure_reply, _InvalidToken, _json_reply, _Reply
from ._tokens import _TokenMint


def _is_protected(path: str) -> bool:
    return path in ("/resource", "/forbidden", "/flaky503") or path.startswith("/resource/")


class _Routes(_TokenMint):
    """Discovery and JWKS documents, the bearer-protected resource and the helper paths."""

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
            return _failure_reply(mode, retry_after=self.retry_after)
        issuer = self.issuer
        document: dict[str, Any] = {
            "issuer": issuer,
            "token_endpoint": issuer + "/token",
            "authorization_endpoint": issuer + "/authorize",
            "device_authorization_endpoint": issuer + "/device_authorization",
            "revocation_endpoint": issuer + "/revoke",
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "jwks_uri": issuer + "/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "refresh_token", "client_credentials", "password", GRANT_JWT_BEARER,
                GRANT_TOKEN_EXCHANGE, "authorization_code", GRANT_DEVICE_CODE,
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
