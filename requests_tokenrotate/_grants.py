"""Grants: how a new token is obtained. They only build form parameters.

Any callable ``(stale: Token | None) -> Token`` is a grant too. It signals a
dead credential by raising :class:`TokenInvalidated` and a transient failure by
raising :class:`RefreshError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, Union

from ._token import Record, Token
from .exceptions import InvalidConfiguration, NotLoggedIn, RefreshError, TokenInvalidated

if TYPE_CHECKING:
    from ._endpoint import OAuthClient
    from ._source import TokenSource

GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS: Final = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"

logger = logging.getLogger(__name__)

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


class RefreshTokenGrant(Record):
    """Spend the stored refresh token (RFC 6749 §6).

    :param client: The token-endpoint client.
    :param scope: Ask for a narrower scope (default: as originally granted).
    """

    __slots__ = ("client", "scope")
    client: OAuthClient
    scope: str | None
    #: The stored token's refresh token is what this grant spends.
    requires_token: ClassVar[bool] = True

    def __init__(self, client: OAuthClient, scope: str | None = None) -> None:
        self._init(client=client, scope=scope)

    @property
    def deadline(self) -> float:
        """The client's deadline for one token-endpoint call (seconds)."""
        return self.client.deadline

    def __call__(self, stale: Token | None) -> Token:
        if stale is None or not stale.refresh_token:
            raise NotLoggedIn(
                "there is no refresh token to renew the expired access token; log in again"
            )
        params = {"grant_type": "refresh_token", "refresh_token": stale.refresh_token}
        token = self.client.request_token({**params, **_extra(scope=self.scope)})
        # RFC 6749 §6: a server that rotates nothing keeps the old refresh token valid.
        return token.with_refresh_token_of(stale)


class ClientCredentialsGrant(Record):
    """Ask for a token with the client's own credentials (RFC 6749 §4.4).

    There is no refresh token: "refresh" means asking again.
    """

    __slots__ = ("audience", "client", "resource", "scope")
    client: OAuthClient
    scope: str | None
    audience: str | None
    resource: str | None
    #: Nothing stored is needed: the client's own credentials are the grant.
    requires_token: ClassVar[bool] = False

    def __init__(
        self,
        client: OAuthClient,
        scope: str | None = None,
        audience: str | None = None,
        resource: str | None = None,
    ) -> None:
        self._init(client=client, scope=scope, audience=audience, resource=resource)

    @property
    def deadline(self) -> float:
        """The client's deadline for one token-endpoint call (seconds)."""
        return self.client.deadline

    def __call__(self, stale: Token | None) -> Token:
        params = {"grant_type": "client_credentials"}
        extra = _extra(scope=self.scope, audience=self.audience, resource=self.resource)
        return self.client.request_token({**params, **extra})


def _current(parent: Assertion, what: str) -> tuple[Token | None, str]:
    """The parent's credential now: ``(the parent token used, if a source; the string)``."""
    from ._source import TokenSource

    if isinstance(parent, TokenSource):
        token = parent.token()  # the parent's own gate and rotation apply
        return token, token.access_token
    return None, _called(parent, what)


def _renewed(parent: Assertion, used: Token | None, what: str) -> str:
    """A fresh credential after the server rejected the one minted from ``used``."""
    from ._source import TokenSource

    if isinstance(parent, TokenSource):
        # The parent's dead credential raises TokenInvalidated with the parent's key.
        return parent.refresh(used).access_token
    return _called(parent, what)


def _called(parent: Callable[[], str], what: str) -> str:
    value = parent()
    if not isinstance(value, str) or not value:
        raise InvalidConfiguration(f"the {what} callable returned no string")
    return value


def _check_parent(parent: object, what: str) -> None:
    from ._source import TokenSource

    if not isinstance(parent, TokenSource) and not callable(parent):
        raise InvalidConfiguration(f"{what} must be a TokenSource or a callable returning a str")


def _request_with_parents(
    client: OAuthClient,
    params: Mapping[str, str],
    parents: Mapping[str, tuple[Assertion, str]],
) -> Token:
    """POST ``params`` plus one credential per form field, minted from ``parents``.

    ``parents`` maps a form field (``assertion``, ``subject_token``, ...) to its
    parent and a name for messages. An ``invalid_grant`` answer means a
    credential was rejected (often clock skew or an access token the server
    already considers expired), not that anything is dead: every parent is
    renewed once and the request is repeated. A second rejection is a
    :class:`RefreshError` and nothing is stamped (issue 4). A parent whose own
    refresh is rejected raises :class:`TokenInvalidated` naming its key.
    """
    used = {field: _current(parent, what) for field, (parent, what) in parents.items()}
    try:
        return client.request_token({**params, **{f: v for f, (_, v) in used.items()}})
    except TokenInvalidated as exc:
        if exc.key is not None:  # not the endpoint's answer: a parent's own verdict
            raise
    names = ", ".join(what for _, what in parents.values())
    logger.debug("%s rejected (invalid_grant); renewing it once", names)
    fresh = {
        field: _renewed(parent, used[field][0], what) for field, (parent, what) in parents.items()
    }
    try:
        return client.request_token({**params, **fresh})
    except TokenInvalidated as exc:
        if exc.key is not None:
            raise
        raise RefreshError(
            f"token endpoint {client.token_endpoint()} rejected the {names} again after it was "
            "renewed (invalid_grant); check the clock and that the client may use this grant, "
            "then try again",
            error="invalid_grant",
        ) from None


class JWTBearerGrant(Record):
    """Trade a JWT assertion for a token (RFC 7523 §2.1).

    The assertion comes from ``assertion``: a parent :class:`TokenSource`,
    whose current access token is sent (its own gate and rotation apply), or a
    zero-argument callable returning the JWT. If the server answers
    ``invalid_grant`` the assertion is renewed once (the parent is refreshed,
    or the callable called again) and the request repeated.

    :param client: The token-endpoint client.
    :param assertion: A parent :class:`TokenSource`, or a callable returning
        the assertion string.
    :param scope: The scope to ask for (default: the server's choice).
    :param audience: An ``audience`` parameter, for servers that want one.
    :param resource: A resource indicator (RFC 8707).
    :raises RefreshError: The assertion was rejected again after its renewal
        (nothing is stamped: the next call tries again).
    :raises TokenInvalidated: The parent's own credential is dead; the error
        names the parent's key.
    """

    __slots__ = ("assertion", "audience", "client", "resource", "scope")
    client: OAuthClient
    assertion: Assertion
    scope: str | None
    audience: str | None
    resource: str | None
    #: A derived token needs nothing stored: the parent supplies the credential.
    requires_token: ClassVar[bool] = False

    def __init__(
        self,
        client: OAuthClient,
        assertion: Assertion,
        scope: str | None = None,
        audience: str | None = None,
        resource: str | None = None,
    ) -> None:
        _check_parent(assertion, "assertion")
        self._init(
            client=client, assertion=assertion, scope=scope, audience=audience, resource=resource
        )

    @property
    def deadline(self) -> float:
        """The client's deadline for one token-endpoint call (seconds)."""
        return self.client.deadline

    def __call__(self, stale: Token | None) -> Token:
        params = {"grant_type": GRANT_JWT_BEARER}
        extra = _extra(scope=self.scope, audience=self.audience, resource=self.resource)
        return _request_with_parents(
            self.client, {**params, **extra}, {"assertion": (self.assertion, "assertion")}
        )


class TokenExchangeGrant(Record):
    """Exchange a subject token for another token (RFC 8693 §2.1).

    The subject token comes from ``subject``: a parent :class:`TokenSource`,
    whose current access token is sent (its own gate and rotation apply), or a
    zero-argument callable returning it (then set ``subject_token_type`` to
    match). ``actor``, if given, works the same way and is sent as the
    ``actor_token`` (delegation, RFC 8693 §1.1). If the server answers
    ``invalid_grant`` every credential is renewed once (parents refreshed,
    callables called again) and the request repeated.

    :param client: The token-endpoint client.
    :param subject: A parent :class:`TokenSource`, or a callable returning the
        subject token.
    :param subject_token_type: Default
        ``urn:ietf:params:oauth:token-type:access_token``.
    :param requested_token_type: The type of token wanted (default: the
        server's choice, usually an access token).
    :param audience: The logical name of the target service.
    :param resource: The URI of the target service (RFC 8707).
    :param scope: The scope to ask for.
    :param actor: The acting party's token source or callable, if any.
    :param actor_token_type: Default
        ``urn:ietf:params:oauth:token-type:access_token``.
    :raises RefreshError: The exchange was rejected again after the renewal
        (nothing is stamped: the next call tries again).
    :raises TokenInvalidated: A parent's own credential is dead; the error
        names the parent's key.
    """

    __slots__ = (
        "actor",
        "actor_token_type",
        "audience",
        "client",
        "requested_token_type",
        "resource",
        "scope",
        "subject",
        "subject_token_type",
    )  # fmt: skip
    client: OAuthClient
    subject: Assertion
    subject_token_type: str
    requested_token_type: str | None
    audience: str | None
    resource: str | None
    scope: str | None
    actor: Assertion | None
    actor_token_type: str
    #: A derived token needs nothing stored: the parent supplies the credential.
    requires_token: ClassVar[bool] = False

    def __init__(
        self,
        client: OAuthClient,
        subject: Assertion,
        *,
        subject_token_type: str = TOKEN_TYPE_ACCESS,
        requested_token_type: str | None = None,
        audience: str | None = None,
        resource: str | None = None,
        scope: str | None = None,
        actor: Assertion | None = None,
        actor_token_type: str = TOKEN_TYPE_ACCESS,
    ) -> None:
        _check_parent(subject, "subject")
        if actor is not None:
            _check_parent(actor, "actor")
        self._init(
            client=client, subject=subject, subject_token_type=subject_token_type,
            requested_token_type=requested_token_type, audience=audience, resource=resource,
            scope=scope, actor=actor, actor_token_type=actor_token_type,
        )  # fmt: skip

    @property
    def deadline(self) -> float:
        """The client's deadline for one token-endpoint call (seconds)."""
        return self.client.deadline

    def __call__(self, stale: Token | None) -> Token:
        params = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token_type": self.subject_token_type}
        parents: dict[str, tuple[Assertion, str]] = {"subject_token": (self.subject, "subject")}
        if self.actor is not None:
            params["actor_token_type"] = self.actor_token_type
            parents["actor_token"] = (self.actor, "actor")
        extra = _extra(
            requested_token_type=self.requested_token_type,
            audience=self.audience,
            resource=self.resource,
            scope=self.scope,
        )
        return _request_with_parents(self.client, {**params, **extra}, parents)
