"""Reading token-endpoint answers (RFC 6749 §5.1 / §5.2): a decision without I/O.

Every failure becomes one of our typed errors, built outside any ``except``
block so that no ``__context__`` carries requests' exceptions (whose
``.request`` holds the form, refresh token included). Whatever the server
says is quoted only after every secret value we sent is redacted from it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, quote_plus

from ._exchange import DEADLINE, NOT_SENT, TOO_LARGE, Answer
from ._token import Token
from .exceptions import InvalidConfiguration, RefreshError, TokenInvalidated, TokenRotateError

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Form parameters whose values are credentials (never quoted back).
SECRET_PARAMS: Final = frozenset({
    "refresh_token", "client_secret", "assertion", "client_assertion", "subject_token",
    "actor_token", "code", "code_verifier", "device_code", "password", "token",
})  # fmt: skip
#: OAuth errors that mean our request or registration is wrong (RFC 6749 §5.2).
_CONFIG_ERRORS: Final = frozenset(
    {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
)
_MAX_DESCRIPTION: Final = 200
_REDACTED: Final = "[redacted]"
#: A quoted run this long of a secret withholds the whole text (a truncated echo).
_ECHO_WINDOW: Final = 16


#: How messages name the endpoint unless told otherwise.
TOKEN_ENDPOINT: Final = "token endpoint"


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_json(body: bytes) -> Any:
    """Decode a JSON body defensively; None when it is not JSON.

    Rejects ``NaN``/``Infinity`` and deep nesting, and never lets the decoder's
    error (whose ``.doc`` holds the whole body, secrets included) escape.
    """
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


def redact(value: Any, secrets: Iterable[str]) -> str | None:
    """``value`` (a string from the server) without any of ``secrets``, shortened.

    Each secret is replaced in its raw and URL-encoded forms; a text that still
    quotes a long run of one (a truncated echo) is withheld entirely.
    """
    if not isinstance(value, str):
        return None
    text = value
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in ordered:
        for form in {secret, quote_plus(secret, safe=""), quote(secret, safe="")}:
            text = text.replace(form, _REDACTED)
    for secret in ordered:
        for start in range(len(secret) - _ECHO_WINDOW + 1):
            if secret[start : start + _ECHO_WINDOW] in text:
                return "[withheld: it quoted a credential that was sent]"
    return text[:_MAX_DESCRIPTION]


def is_bare_400(answer: Answer) -> bool:
    """A 400 with no OAuth error: an empty body, or a JSON object without ``error``.

    Some servers refuse a spent or revoked refresh token this way, against
    RFC 6749 §5.2. A proxy's HTML page or other text is not bare.
    """
    if answer.failure is not None or answer.status != 400:
        return False
    if not answer.body.strip():
        return True
    body = parse_json(answer.body)
    return isinstance(body, dict) and "error" not in body


def failure_error(
    url: str, answer: Answer, deadline: float, what: str = TOKEN_ENDPOINT
) -> RefreshError:
    """The error for an exchange that produced no usable answer."""
    if answer.failure == DEADLINE:
        return RefreshError(
            f"{what} {url} did not answer within the {deadline:g} s deadline; try again"
        )
    if answer.failure == TOO_LARGE:
        return RefreshError(
            f"{what} {url} answered {answer.status} with a body over 1 MiB; "
            "a proxy may be in the way",
            status_code=answer.status,
        )
    how = (
        "could not be reached"
        if answer.failure == NOT_SENT
        else "failed after the request was sent"
    )
    name = f" ({answer.detail})" if answer.detail else ""
    if answer.detail.endswith("Timeout"):
        how = "timed out"
    return RefreshError(f"{what} {url} {how}{name}; try again")


def token_from_answer(
    url: str, answer: Answer, *, now: float, what: str = TOKEN_ENDPOINT
) -> Token:
    """The token of a 200 answer.

    :raises RefreshError: The body is not a usable token (not JSON, no
        ``access_token``, one that cannot be sent in a header).
    """
    body = parse_json(answer.body)
    if not isinstance(body, dict):
        ctype = answer.headers.get("Content-Type", "none")
        raise RefreshError(
            f"{what} {url} answered 200 with a body that is not a JSON object "
            f"(Content-Type {ctype}); a proxy or captive portal may be in the way",
            status_code=200,
        )
    problem = None
    try:
        token = Token.from_response(body, now=now)
    except ValueError as exc:
        problem = str(exc)
    if problem is not None:  # raised outside the except: no __context__ with the body
        raise RefreshError(f"{what} {url} answered 200 but {problem}", status_code=200)
    return token


def error_from_answer(
    url: str,
    answer: Answer,
    *,
    secrets: Iterable[str],
    now: float,
    bare_again: bool,
    what: str = TOKEN_ENDPOINT,
) -> TokenRotateError:
    """The typed error for a non-200 answer.

    :param secrets: Every credential value sent; none is quoted back.
    :param bare_again: This refresh token already got a bare 400 last time.
    :param what: The endpoint, for messages (``"revocation endpoint"``).
    """
    status = answer.status
    body = parse_json(answer.body)
    secrets = list(secrets)
    fields = body if isinstance(body, dict) else {}
    error = redact(fields.get("error"), secrets)
    description = redact(fields.get("error_description"), secrets)
    detail = f"{status} {error}" if error else str(status)
    if description:
        detail += f": {description}"
    if error == "invalid_grant" and status in (400, 401):
        return TokenInvalidated(
            f"{what} {url} rejected the grant ({detail}); log in again",
            invalidated_at=now,
        )
    if error in _CONFIG_ERRORS:
        return InvalidConfiguration(
            f"{what} {url} refused the client ({detail}); check client_id, "
            "client_secret, auth_method and scope"
        )
    if bare_again:
        return TokenInvalidated(
            f"{what} {url} refused the same refresh token twice with a bare 400 and "
            "no OAuth error; it is taken as spent or revoked: log in again",
            invalidated_at=now,
        )
    if status == 429 or status >= 500:
        hint = "try again later"
    elif is_bare_400(answer):
        hint = "no OAuth error; if it repeats for this refresh token, it is taken as dead"
    elif error is None:
        hint = "not an OAuth error answer; a proxy may be in the way"
    else:
        hint = "the request was refused"
    return RefreshError(
        f"{what} {url} answered {detail} ({hint})",
        status_code=status,
        error=error,
        error_description=description,
    )
