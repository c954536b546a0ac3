"""The token record: what the store keeps and the transport attaches."""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any, Final

from .exceptions import InvalidConfiguration

logger = logging.getLogger(__name__)

#: ``expires_in`` values above this (ten years) are treated as nonsense.
MAX_EXPIRES_IN: Final = 10 * 365 * 86400

#: What an access token may hold to follow "Bearer " in a header: visible
#: ASCII and obs-text (Latin-1); no whitespace or control characters (a CR or
#: LF would split the header), nothing outside Latin-1.
HEADER_SAFE: Final = re.compile(r"[\x21-\x7e\x80-\xff]+")

_STR_FIELDS: Final = ("token_type", "refresh_token", "scope", "id_token")
_TIME_FIELDS: Final = ("expires_at", "obtained_at", "invalidated_at")
_FIELDS: Final = (
    "access_token", "token_type", "refresh_token", "expires_at",
    "scope", "id_token", "obtained_at", "invalidated_at",
)  # fmt: skip


def fingerprint(secret: str | None) -> str:
    """A short, non-reversible tag for correlating a secret in logs."""
    if not secret:
        return "-"
    import hashlib  # loads OpenSSL (~2 ms); only logs and reprs need it

    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _number(value: Any) -> float | None:
    """A finite float from an int, float or numeric string, else None."""
    if isinstance(value, bool):  # json gives True for `true`; it is not a number here
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _expires_in(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _number(value)
    if seconds is None or seconds < 0 or seconds > MAX_EXPIRES_IN:
        # Decided: ignore (with a warning) rather than fail; the JWT `exp`, or
        # the reactive 401 path, still tells us when the token is stale.
        logger.warning(
            "ignoring unusable expires_in in a token response (%s)", type(value).__name__
        )
        return None
    return seconds


def jwt_expiry(access_token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (an expiry hint only).

    An opaque or malformed token is not an error: its expiry is simply unknown.
    """
    if access_token.count(".") != 2:
        return None
    import jwt  # only the paths that meet a new token pay for this import

    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return None
    if not isinstance(claims, dict):
        return None
    return _number(claims.get("exp"))


class Record:
    """An immutable value object whose fields are its ``__slots__``.

    Used instead of frozen dataclasses: ``import dataclasses`` (it loads
    ``inspect``) and generating the classes cost ~7 ms of import time
    (``bench/importtime.py``), more than the rest of the package.
    """

    __slots__: tuple[str, ...] = ()

    def _init(self, **values: Any) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(zip(self.__slots__, self._values(), strict=True))))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


def _rebuild(cls: type[Record], values: dict[str, Any]) -> Record:
    record = cls.__new__(cls)
    record._init(**values)
    return record


class Token(Record):
    """An OAuth2 token as the token endpoint issued it. Immutable: see :meth:`replace`.

    :ivar access_token: The bearer credential (never shown by ``repr``).
    :ivar token_type: As issued, normalised so that ``bearer`` reads ``Bearer``.
    :ivar refresh_token: The refresh credential, or None.
    :ivar expires_at: Expiry in epoch seconds: from ``expires_in``, else the
        JWT ``exp`` claim, else None (unknown).
    :ivar scope: The granted scope, if the server said.
    :ivar id_token: The OIDC ID token, if any.
    :ivar obtained_at: When the token was received (epoch seconds).
    :ivar invalidated_at: When the refresh credential was found dead, or None.
    """

    __slots__ = _FIELDS

    access_token: str
    token_type: str
    refresh_token: str | None
    expires_at: float | None
    scope: str | None
    id_token: str | None
    obtained_at: float
    invalidated_at: float | None

    def __init__(
        self,
        access_token: str,
        token_type: str = "Bearer",  # noqa: S107  # a token type, not a password
        refresh_token: str | None = None,
        expires_at: float | None = None,
        scope: str | None = None,
        id_token: str | None = None,
        obtained_at: float = 0.0,
        invalidated_at: float | None = None,
    ) -> None:
        if not isinstance(access_token, str) or not access_token:
            raise InvalidConfiguration("a token needs a non-empty access_token string")
        if HEADER_SAFE.fullmatch(access_token) is None:
            # Never quote it: the fingerprint is enough to correlate.
            raise InvalidConfiguration(
                f"the access_token (fingerprint {fingerprint(access_token)}) holds characters "
                "that cannot be sent in an HTTP header (space, CR, LF, controls, non-Latin-1)"
            )
        if token_type.lower() == "bearer":
            token_type = "Bearer"
        self._init(
            access_token=access_token, token_type=token_type, refresh_token=refresh_token,
            expires_at=expires_at, scope=scope, id_token=id_token, obtained_at=obtained_at,
            invalidated_at=invalidated_at,
        )  # fmt: skip

    def replace(self, **changes: Any) -> Token:
        """A copy with some fields changed, like :func:`dataclasses.replace`."""
        return Token(**{**self.to_dict(), **changes})

    def __repr__(self) -> str:
        # Secrets stay out: the access token shows as a fingerprint only.
        return (
            f"Token(token_type={self.token_type!r}, "
            f"access_token=<{fingerprint(self.access_token)}>, "
            f"has_refresh_token={self.refresh_token is not None}, expires_at={self.expires_at!r}, "
            f"scope={self.scope!r}, obtained_at={self.obtained_at!r}, "
            f"invalidated_at={self.invalidated_at!r})"
        )

    @classmethod
    def from_response(cls, data: Any, *, now: float | None = None) -> Token:
        """Build a token from a token-endpoint JSON body (RFC 6749 §5.1).

        Also reads token dicts exported by other libraries or by
        :meth:`to_dict`, keeping their real age. The expiry is, in order of
        precedence: ``expires_at`` (absolute epoch seconds, as requests-oauthlib
        and Authlib store it); ``obtained_at + expires_in``; ``now +
        expires_in``; the JWT ``exp`` claim; else unknown. ``obtained_at`` is
        taken when present and not in the future, else ``now``.

        :param data: The decoded JSON object.
        :param now: The receive time in epoch seconds (default: ``time.time()``).
        :raises InvalidConfiguration: (a :class:`ValueError`) ``data`` is not an
            object with an ``access_token`` string that can be sent in a header.
            The message never quotes the body.
        """
        if not isinstance(data, dict):
            raise InvalidConfiguration("the token response is not a JSON object")
        access_token = data.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise InvalidConfiguration("the token response has no access_token")
        received = time.time() if now is None else now
        obtained_at = _number(data.get("obtained_at"))
        if obtained_at is None or obtained_at > received or obtained_at <= 0:
            obtained_at = received
        expires_at = _number(data.get("expires_at"))
        if expires_at is None or expires_at <= 0:
            lifetime = _expires_in(data.get("expires_in"))
            if lifetime is not None:
                expires_at = obtained_at + lifetime
            else:
                expires_at = jwt_expiry(access_token)
        strings = {name: data.get(name) for name in _STR_FIELDS}
        for name, value in strings.items():
            if value is not None and not isinstance(value, str):
                raise InvalidConfiguration(f"the token response's {name} is not a string")
        return cls(
            access_token=access_token,
            token_type=strings["token_type"] or "Bearer",
            refresh_token=strings["refresh_token"] or None,
            expires_at=expires_at,
            scope=strings["scope"],
            id_token=strings["id_token"],
            obtained_at=obtained_at,
        )

    @property
    def lifetime(self) -> float | None:
        """Seconds from ``obtained_at`` to ``expires_at``, if known."""
        if self.expires_at is None:
            return None
        return self.expires_at - self.obtained_at

    @property
    def is_invalidated(self) -> bool:
        """True once the refresh credential was rejected by the server."""
        return self.invalidated_at is not None

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        """True if the token expires within ``seconds`` from ``now``.

        A token whose expiry is unknown never expires by the clock.
        """
        if self.expires_at is None:
            return False
        return self.expires_at - seconds <= (time.time() if now is None else now)

    def with_refresh_token_of(self, stale: Token | None) -> Token:
        """Keep ``stale``'s refresh token when this answer carried none (RFC 6749 §6)."""
        if self.refresh_token or stale is None or not stale.refresh_token:
            return self
        return self.replace(refresh_token=stale.refresh_token)

    def is_same(self, other: Token | None) -> bool:
        """True if ``other`` holds the same credentials."""
        return (
            other is not None
            and other.access_token == self.access_token
            and other.refresh_token == self.refresh_token
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (secrets included: for stores only)."""
        return dict(zip(_FIELDS, self._values(), strict=True))

    @classmethod
    def from_dict(cls, data: Any) -> Token:
        """Rebuild a token written by :meth:`to_dict`.

        :raises ValueError: A field is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError("the stored token is not a JSON object")
        for name in _STR_FIELDS:
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ValueError(f"the stored {name} is not a string")
        times: dict[str, float | None] = {}
        for name in _TIME_FIELDS:
            value = data.get(name)
            times[name] = None if value is None else _number(value)
            if value is not None and (times[name] is None or isinstance(value, str)):
                raise ValueError(f"the stored {name} is not a number")
        return cls(
            access_token=data.get("access_token"),  # type: ignore[arg-type]  # checked in __post_init__
            token_type=data.get("token_type") or "Bearer",
            refresh_token=data.get("refresh_token"),
            expires_at=times["expires_at"],
            scope=data.get("scope"),
            id_token=data.get("id_token"),
            obtained_at=times["obtained_at"] or 0.0,
            invalidated_at=times["invalidated_at"],
        )

    def __str__(self) -> str:
        return repr(self)
