"""Grants: how a new token is obtained. They only build form parameters.

Any callable ``(stale: Token | None) -> Token`` is a grant too. It signals a
dead credential by raising :class:`TokenInvalidated` and a transient failure by
raising :class:`RefreshError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, Union

from ._token import Token
from .exceptions import NotLoggedIn

if TYPE_CHECKING:
    from ._endpoint import OAuthClient
    from ._source import TokenSource

GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS: Final = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"

#: A parent credential: a :class:`TokenSource` or a callable returning a string.
Assertion = Union["TokenSource", Callable[[], str]]


class Grant(Protocol):
    """What :class:`TokenSource` calls to obtain a new token."""

    def __call__(self, stale: Token | None) -> Token: ...


def requires_token(grant: object) -> bool:
    """Whether ``grant`` needs a stored token to work (a refresh does; client credentials not)."""
    return bool(getattr(grant, "requires_token", True))


def _extra(**params: str | None) -> dict[str, str]:
    return {name: value for name, value in params.items() if value is not None}


@dataclass(frozen=True, slots=True)
class RefreshTokenGrant:
    """Spend the stored refresh token (RFC 6749 §6).

    :param client: The token-endpoint client.
    :param scope: Ask for a narrower scope (default: as originally granted).
    """

    client: OAuthClient
    scope: str | None = None
    requires_token: bool = True

    def __call__(self, stale: Token | None) -> Token:
        if stale is None or not stale.refresh_token:
            raise NotLoggedIn(
                "there is no refresh token to renew the expired access token; log in again"
            )
        params = {"grant_type": "refresh_token", "refresh_token": stale.refresh_token}
        token = self.client.request_token({**params, **_extra(scope=self.scope)})
        # RFC 6749 §6: a server that rotates nothing keeps the old refresh token valid.
        return token.with_refresh_token_of(stale)


@dataclass(frozen=True, slots=True)
class ClientCredentialsGrant:
    """Ask for a token with the client's own credentials (RFC 6749 §4.4).

    There is no refresh token: "refresh" means asking again.
    """

    client: OAuthClient
    scope: str | None = None
    audience: str | None = None
    resource: str | None = None
    requires_token: bool = False

    def __call__(self, stale: Token | None) -> Token:
        params = {"grant_type": "client_credentials"}
        extra = _extra(scope=self.scope, audience=self.audience, resource=self.resource)
        return self.client.request_token({**params, **extra})
