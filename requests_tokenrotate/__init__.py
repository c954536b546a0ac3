"""OAuth2 bearer tokens for requests, rotated transparently and single-flight.

See README.rst for the quick start. Everything public is re-exported here;
no user should need to import a ``_module``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._adapter import TokenRotateAdapter, mount
from ._auth import TokenRotateAuth
from ._endpoint import OAuthClient
from ._grants import (
    ClientCredentialsGrant,
    JWTBearerGrant,
    RefreshTokenGrant,
    TokenExchangeGrant,
)
from ._protocol import HeldLock, KeyLock, TokenStore
from ._source import RefreshPolicy, TokenSource
from ._stores import FileTokenStore, MemoryTokenStore
from ._token import Token
from .exceptions import (
    DiscoveryError,
    InvalidConfiguration,
    LockLost,
    LockTimeout,
    NotLoggedIn,
    RefreshError,
    TokenInvalidated,
    TokenRotateError,
    TokenStoreError,
)

__version__ = "0.1.0"

__all__ = [
    "ClientCredentialsGrant",
    "DiscoveryError",
    "FileTokenStore",
    "HeldLock",
    "InvalidConfiguration",
    "JWTBearerGrant",
    "KeyLock",
    "LockLost",
    "LockTimeout",
    "MemoryTokenStore",
    "NotLoggedIn",
    "OAuthClient",
    "RedisTokenStore",
    "RefreshError",
    "RefreshPolicy",
    "RefreshTokenGrant",
    "Token",
    "TokenExchangeGrant",
    "TokenInvalidated",
    "TokenRotateAdapter",
    "TokenRotateAuth",
    "TokenRotateError",
    "TokenSource",
    "TokenStore",
    "TokenStoreError",
    "__version__",
    "mount",
]

#: Public names whose module imports an optional backend: loaded on first use.
_LAZY = {"RedisTokenStore": "._redis"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if _TYPE_CHECKING:
    from ._redis import RedisTokenStore

logging.getLogger(__name__).addHandler(logging.NullHandler())
