"""Token-endpoint requests on plain values (RFC 6749 §2.3, §4.4, §6; RFC 7523; RFC 8693). No I/O.

What a client sends: the form of each grant and the client's authentication
(``client_secret_basic``, ``client_secret_post``, ``none``). Any HTTP client
can POST the result; :class:`~requests_tokenrotate.OAuthClient` is the shell
that does it with requests, and :mod:`._answers` reads what comes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import quote_plus

from ._answers import SECRET_PARAMS
from .exceptions import InvalidConfiguration

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AUTH_METHODS",
    "GRANT_JWT_BEARER",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS",
    "TOKEN_TYPE_JWT",
    "auth_method_for",
    "authenticated",
    "basic_credentials",
    "client_credentials_form",
    "jwt_bearer_form",
    "refresh_form",
    "secrets_in",
    "token_exchange_form",
]

AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS: Final = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"


# -- client authentication (RFC 6749 §2.3.1) ---------------------------------------------
def auth_method_for(auth_method: str | None, client_secret: str | None) -> str:
    """The client authentication method: as given, else ``client_secret_basic`` with a
    secret and ``none`` without one.

    :raises InvalidConfiguration: An unknown method, or one that needs the missing secret.
    """
    method = auth_method or ("client_secret_basic" if client_secret else "none")
    if method not in AUTH_METHODS:
        raise InvalidConfiguration(
            f"auth_method must be one of {', '.join(AUTH_METHODS)}, not {method!r}"
        )
    if method != "none" and not client_secret:
        raise InvalidConfiguration(f"auth_method {method} needs a client_secret")
    return method


def authenticated(
    params: Mapping[str, str], *, client_id: str, client_secret: str | None, auth_method: str
) -> dict[str, str]:
    """``params`` plus the client's authentication in the body (post, none)."""
    data = dict(params)
    if auth_method != "client_secret_basic":
        data["client_id"] = client_id
        if auth_method == "client_secret_post" and client_secret is not None:
            data["client_secret"] = client_secret
    return data


def basic_credentials(
    *, client_id: str, client_secret: str | None, auth_method: str
) -> tuple[str, str] | None:
    """The (user, password) pair for HTTP Basic with ``client_secret_basic``, else None."""
    if auth_method != "client_secret_basic" or client_secret is None:
        return None
    # RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding.
    return (quote_plus(client_id, safe=""), quote_plus(client_secret, safe=""))


def secrets_in(data: Mapping[str, str], client_secret: str | None) -> list[str]:
    """The secret values a form (and the client) carries: redacted from any echo."""
    secrets = [data[name] for name in SECRET_PARAMS if data.get(name)]
    if client_secret:
        secrets.append(client_secret)
    return secrets


# -- grant forms ---------------------------------------------------------------------------
def _extra(**params: str | None) -> dict[str, str]:
    return {name: value for name, value in params.items() if value is not None}


def refresh_form(refresh_token: str, *, scope: str | None = None) -> dict[str, str]:
    """The refresh grant's form (RFC 6749 §6)."""
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, **_extra(scope=scope)}


def client_credentials_form(
    *, scope: str | None = None, audience: str | None = None, resource: str | None = None
) -> dict[str, str]:
    """The client credentials grant's form (RFC 6749 §4.4)."""
    extra = _extra(scope=scope, audience=audience, resource=resource)
    return {"grant_type": "client_credentials", **extra}


def jwt_bearer_form(
    *, scope: str | None = None, audience: str | None = None, resource: str | None = None
) -> dict[str, str]:
    """The JWT bearer grant's form (RFC 7523 §2.1), without its ``assertion``."""
    return {
        "grant_type": GRANT_JWT_BEARER,
        **_extra(scope=scope, audience=audience, resource=resource),
    }


def token_exchange_form(
    *,
    subject_token_type: str,
    actor_token_type: str | None = None,
    requested_token_type: str | None = None,
    audience: str | None = None,
    resource: str | None = None,
    scope: str | None = None,
) -> dict[str, str]:
    """The token exchange grant's form (RFC 8693 §2.1), without the tokens themselves.

    :param actor_token_type: Given when an ``actor_token`` is sent.
    """
    params = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token_type": subject_token_type}
    if actor_token_type is not None:
        params["actor_token_type"] = actor_token_type
    extra = _extra(
        requested_token_type=requested_token_type, audience=audience, resource=resource, scope=scope
    )
    return {**params, **extra}
