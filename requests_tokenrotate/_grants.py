"""Grants: how a new token is obtained, as records that ask :mod:`._oauth` for their form.

The form of each grant is built on plain values in :mod:`._oauth`; a grant
adds only what needs the gate: spending the stored refresh token, or minting
a parent's credential (a :class:`TokenSource` or a callable) and renewing it
once after ``invalid_grant``.

Any callable ``(stale: Token | None) -> Token`` is a grant too. It signals a
dead credential by raising :class:`TokenInvalidated` and a transient failure by
raising :class:`RefreshError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Union

from ._oauth import GRANT_JWT_BEARER as GRANT_JWT_BEARER
from ._oauth import GRANT_TOKEN_EXCHANGE as GRANT_TOKEN_EXCHANGE
from ._oauth import (
    TOKEN_TYPE_ACCESS,
    client_credentials_form,
    jwt_bearer_form,
    refresh_form,
    token_exchange_form,
)
from ._oauth import TOKEN_TYPE_JWT as TOKEN_TYPE_JWT
from ._protocol import Grant as Grant
from ._protocol import requires_token as requires_token
from ._record import Record
from ._source import TokenSource
from ._token import Token
from .exceptions import InvalidConfiguration, NotLoggedIn, RefreshError, TokenInvalidated

if TYPE_CHECKING:
    from ._endpoint import OAuthClient


logger = logging.getLogger(__name__)

#: A parent credential: a :class:`TokenSource` or a callable returning a string.
Assertion = Union["TokenSource", Callable[[], str]]


class _ClientGrant(Record):
    """A grant that calls one :class:`OAuthClient`; the gate reads its ``deadline``."""

    __slots__ = ()
    client: OAuthClient

    @property
    def deadline(self) -> float:
        """The client's deadline for one token-endpoint call (seconds)."""
        return self.client.deadline


class RefreshTokenGrant(_ClientGrant):
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
        self.client = client
        self.scope = scope

    def __call__(self, stale: Token | None) -> Token:
        if stale is None or not stale.refresh_token:
            raise NotLoggedIn(
                "there is no refresh token to renew the expired access token; log in again"
            )
        token = self.client.request_token(refresh_form(stale.refresh_token, scope=self.scope))
        # RFC 6749 §6: a server that rotates nothing keeps the old refresh token valid.
        return token.with_refresh_token_of(stale)


class ClientCredentialsGrant(_ClientGrant):
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
        self.client = client
        self.scope = scope
        self.audience = audience
        self.resource = resource

    def __call__(self, stale: Token | None) -> Token:
        form = client_credentials_form(
            scope=self.scope, audience=self.audience, resource=self.resource
        )
        return self.client.request_token(form)


def _current(parent: Assertion, what: str) -> tuple[Token | None, str]:
    """The parent's credential now: ``(the parent token used, if a source; the string)``."""

    if isinstance(parent, TokenSource):
        token = parent.token()  # the parent's own gate and rotation apply
        return token, token.access_token
    return None, _called(parent, what)


def _renewed(parent: Assertion, used: Token | None, what: str) -> str:
    """A fresh credential after the server rejected the one minted from ``used``."""

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


class JWTBearerGrant(_ClientGrant):
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
        self.client = client
        self.assertion = assertion
        self.scope = scope
        self.audience = audience
        self.resource = resource

    def __call__(self, stale: Token | None) -> Token:
        form = jwt_bearer_form(scope=self.scope, audience=self.audience, resource=self.resource)
        return _request_with_parents(
            self.client, form, {"assertion": (self.assertion, "assertion")}
        )


class TokenExchangeGrant(_ClientGrant):
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
        self.client = client
        self.subject = subject
        self.subject_token_type = subject_token_type
        self.requested_token_type = requested_token_type
        self.audience = audience
        self.resource = resource
        self.scope = scope
        self.actor = actor
        self.actor_token_type = actor_token_type

    def __call__(self, stale: Token | None) -> Token:
        parents: dict[str, tuple[Assertion, str]] = {"subject_token": (self.subject, "subject")}
        if self.actor is not None:
            parents["actor_token"] = (self.actor, "actor")
        form = token_exchange_form(
            subject_token_type=self.subject_token_type,
            actor_token_type=None if self.actor is None else self.actor_token_type,
            requested_token_type=self.requested_token_type,
            audience=self.audience,
            resource=self.resource,
            scope=self.scope,
        )
        return _request_with_parents(self.client, form, parents)
