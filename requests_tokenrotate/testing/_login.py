"""LocalIdP's login endpoints: device authorization (RFC 8628), authorization code with PKCE
(RFC 7636) and the RFC 9207 ``iss`` response parameter, and token revocation (RFC 7009).

There is no user and no browser UI: tests approve logins programmatically
(:meth:`~LocalIdP.approve_device`, ``authorization_decision``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from ._grants import _identify_client, _TokenEndpoint
from ._replies import (
    _NO_STORE,
    _error_reply,
    _failure_reply,
    _InvalidToken,
    _json_reply,
    _OAuthError,
    _Reply,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

GRANT_DEVICE_CODE: Final = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_ANSWERS: Final = frozenset(
    {"authorization_pending", "slow_down", "access_denied", "expired_token"}
)
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_CODE_LIFETIME: Final = 60.0


@dataclass(slots=True)
class _Device:
    client_id: str
    user_code: str
    scope: str | None
    audience: list[str]
    expires_at: float
    interval: float
    last_poll: float
    status: str = "pending"  # "pending", "approved", "denied" or "used"
    subject: str = "user"


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str | None
    audience: list[str]
    expires_at: float
    used: bool = False


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _LoginEndpoints(_TokenEndpoint):
    """``{issuer}/device_authorization``, ``{issuer}/authorize`` and ``{issuer}/revoke``."""

    device_interval: float
    device_code_lifetime: float
    auto_approve_devices: bool
    authorization_decision: str
    send_iss: bool
    authorization_requests: list[dict[str, str]]
    device_authorizations: int
    device_polls: int
    authorizations: int
    revocations: int
    _devices: dict[str, _Device]
    _device_answers: deque[str]
    _codes: dict[str, _Code]
    _revoked_jtis: set[str]

    def _init_login(self) -> None:
        self.device_interval = 5.0
        self.device_code_lifetime = 600.0
        self.auto_approve_devices = False
        self.authorization_decision = "approve"
        self.send_iss = True
        self.authorization_requests = []
        self.device_authorizations = self.device_polls = 0
        self.authorizations = self.revocations = 0
        self._devices, self._codes = {}, {}
        self._device_answers = deque()
        self._revoked_jtis = set()

    def _login_paths(self) -> tuple[str, ...]:
        base = self.issuer_path
        return (f"{base}/device_authorization", f"{base}/authorize", f"{base}/revoke")

    # -- programmatic approval ---------------------------------------------------------

    def approve_device(self, user_code: str, subject: str = "user") -> None:
        """Approve the pending device login with ``user_code`` (as the user would).

        :raises KeyError: No pending device login has that code.
        """
        with self._lock:
            device = self._pending(user_code)
            device.status, device.subject = "approved", subject

    def deny_device(self, user_code: str) -> None:
        """Deny the pending device login with ``user_code``: polls answer ``access_denied``.

        :raises KeyError: No pending device login has that code.
        """
        with self._lock:
            self._pending(user_code).status = "denied"

    def device_answer_next(self, error: str, n: int = 1) -> None:
        """Answer the next ``n`` device-code polls with ``error`` (e.g. ``"slow_down"``).

        :raises ValueError: ``error`` is not one of RFC 8628 §3.5's answers.
        """
        if error not in DEVICE_ANSWERS:
            raise ValueError(f"error must be one of {sorted(DEVICE_ANSWERS)}, not {error!r}")
        with self._lock:
            self._device_answers.extend([error] * n)

    def _pending(self, user_code: str) -> _Device:
        for device in self._devices.values():
            if device.user_code == user_code and device.status == "pending":
                return device
        raise KeyError(f"no pending device login with user code {user_code!r}")

    # -- HTTP ------------------------------------------------------------------------

    def _handle_login(
        self, command: str, path: str, query: str, body: bytes, content_type: str,
        authorization: str | None,
    ) -> _Reply:  # fmt: skip
        if path.endswith("/authorize"):
            if command not in ("GET", "HEAD"):
                return _json_reply(405, {"error": "invalid_request"}, {"Allow": "GET"})
            with self._lock:
                return self._authorize(dict(parse_qsl(query, keep_blank_values=True)))
        if command != "POST":
            return _json_reply(405, {"error": "invalid_request"}, {"Allow": "POST"})
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
        client_id, _method, secret, problem = _identify_client(form, authorization)
        revoking = path.endswith("/revoke")
        with self._lock:
            mode = None
            if revoking:
                failures = self._failures["revocation"]
                mode = failures.popleft() if failures else None
        if mode is not None:
            return _failure_reply(mode)
        with self._lock:
            try:
                if (
                    content_type.split(";")[0].strip().lower()
                    != "application/x-www-form-urlencoded"
                ):
                    raise _OAuthError("invalid_request", "The body must be a form")
                self._authenticate(client_id, secret, problem)
                if revoking:
                    self._revoke_token(client_id, form)
                    return _Reply(200, b"", headers=dict(_NO_STORE))
                return _json_reply(200, self._device_authorization(client_id, form), _NO_STORE)
            except _OAuthError as exc:
                return _error_reply(exc)

    def _device_authorization(self, client_id: str, form: Mapping[str, str]) -> dict[str, Any]:
        self.device_authorizations += 1
        device_code = secrets.token_urlsafe(32)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        now = self._clock()
        audience = [form[n] for n in ("audience", "resource") if form.get(n)]
        self._devices[device_code] = _Device(
            client_id, user_code, form.get("scope") or None, audience,
            now + self.device_code_lifetime, self.device_interval, now,
            "approved" if self.auto_approve_devices else "pending",
        )  # fmt: skip
        uri = self.issuer + "/device"
        return {
            "device_code": device_code, "user_code": user_code, "verification_uri": uri,
            "verification_uri_complete": f"{uri}?user_code={user_code}",
            "expires_in": int(self.device_code_lifetime), "interval": self.device_interval,
        }  # fmt: skip

    def _authorize(self, query: Mapping[str, str]) -> _Reply:
        self.authorizations += 1
        self.authorization_requests.append(dict(query))
        client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
        target = urlsplit(redirect_uri)
        # RFC 6749 §4.1.2.1: never redirect to an unverified client or URI.
        if client_id not in self.clients:
            return _json_reply(400, {"error": "invalid_request", "error_description": "client"})
        if target.scheme != "http" or target.hostname not in _LOOPBACK:
            return _json_reply(400, {"error": "invalid_request", "error_description": "redirect"})
        answer: dict[str, str] = {}
        if query.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif not query.get("code_challenge") or query.get("code_challenge_method") != "S256":
            answer.update(error="invalid_request", error_description="PKCE S256 is required")
        elif self.authorization_decision != "approve":
            answer["error"] = self.authorization_decision
        else:
            code = secrets.token_urlsafe(32)
            audience = [query[n] for n in ("audience", "resource") if query.get(n)]
            self._codes[code] = _Code(
                client_id, redirect_uri, query["code_challenge"], query.get("scope") or None,
                audience, self._clock() + _CODE_LIFETIME,
            )  # fmt: skip
            answer["code"] = code
        if "state" in query:
            answer["state"] = query["state"]
        if self.send_iss:
            answer["iss"] = self.issuer  # RFC 9207
        separator = "&" if target.query else "?"
        return _json_reply(302, {}, {"Location": redirect_uri + separator + urlencode(answer)})

    # -- the token endpoint's new grants ------------------------------------------------

    def _grant(
        self, client_id: str, form: Mapping[str, str], pairs: list[tuple[str, str]]
    ) -> dict[str, Any]:
        grant = form.get("grant_type")
        if grant == GRANT_DEVICE_CODE:
            return self._device_grant(client_id, form.get("device_code", ""))
        if grant == "authorization_code":
            return self._code_grant(client_id, form)
        return super()._grant(client_id, form, pairs)

    def _device_grant(self, client_id: str, device_code: str) -> dict[str, Any]:
        self.device_polls += 1
        device = self._devices.get(device_code)
        if device is None or device.client_id != client_id:
            raise _OAuthError("invalid_grant", "The device code is unknown or not yours")
        now = self._clock()
        answer = self._device_answers.popleft() if self._device_answers else None
        too_soon = now - device.last_poll < device.interval * 0.9
        device.last_poll = now
        if answer is None and now >= device.expires_at:
            answer = "expired_token"
        if answer is None and device.status == "denied":
            answer = "access_denied"
        if answer is None and device.status == "used":
            raise _OAuthError("invalid_grant", "The device code was already used")
        if answer is None and too_soon:
            answer = "slow_down"  # RFC 8628 §3.5
        if answer is None and device.status == "pending":
            answer = "authorization_pending"
        if answer == "slow_down":
            device.interval += 5
        if answer is not None:
            raise _OAuthError(answer, f"device login: {answer}")
        device.status = "used"
        return self._new_login(client_id, device.subject, device.scope, None, device.audience)

    def _code_grant(self, client_id: str, form: Mapping[str, str]) -> dict[str, Any]:
        record = self._codes.get(form.get("code", ""))
        if record is None or record.client_id != client_id or record.used:
            raise _OAuthError("invalid_grant", "The authorization code is unknown or used")
        record.used = True  # single use, whatever happens next (RFC 6749 §4.1.2)
        if record.expires_at <= self._clock():
            raise _OAuthError("invalid_grant", "The authorization code expired")
        if form.get("redirect_uri") != record.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier", "")
        # RFC 7636 §4.6: compare S256(code_verifier) with the code_challenge.
        if not verifier or not hmac.compare_digest(_s256(verifier), record.challenge):
            raise _OAuthError("invalid_grant", "PKCE verification failed")
        return self._new_login(client_id, "user", record.scope, None, record.audience)

    # -- revocation --------------------------------------------------------------------

    def _revoke_token(self, client_id: str, form: Mapping[str, str]) -> None:
        token = form.get("token")
        if not token:
            raise _OAuthError("invalid_request", "token is required")
        self.revocations += 1
        record = self._refresh.get(token)
        if record is not None:
            if record.client_id != client_id:
                return  # RFC 7009 §2.1: not this client's token; answer as if unknown
            record.state = "revoked"
            # RFC 7009 §2.1: the access tokens of the same grant go with it.
            self._revoked_families.add(record.family)
            return
        try:
            claims = super()._verify(token)
        except _InvalidToken:  # an unknown or invalid token: nothing to do
            return
        if claims.get("client_id") == client_id:
            self._revoked_jtis.add(str(claims["jti"]))

    def _verify(self, token: str) -> dict[str, Any]:
        claims = super()._verify(token)
        if str(claims["jti"]) in self._revoked_jtis:
            raise _InvalidToken("The access token was revoked")
        return claims
