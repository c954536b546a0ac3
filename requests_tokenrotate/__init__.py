"""OAuth2 bearer tokens for requests, rotated transparently and single-flight.

See README.rst and docs/ for the quick start. Everything public is re-exported here;
no user should need to import a ``_module``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._adapter import AdapterOptions, MountedAuth, TokenRotateAdapter, mount
from ._auth import TokenRotateAuth
from ._browser import login_browser
from ._endpoint import OAuthClient
from ._freshness import RefreshPolicy
from ._grants import (
    ClientCredentialsGrant,
    JWTBearerGrant,
    RefreshTokenGrant,
    TokenExchangeGrant,
)
from ._login import DeviceCode, login_device
from ._policy import TransportOptions
from ._protocol import HeldLock, KeyLock, TokenStore
from ._source import TokenSource
from ._stores import FileTokenStore, MemoryTokenStore
from ._token import Token
from .exceptions import (
    DiscoveryError,
    InvalidConfiguration,
    LockLost,
    LockTimeout,
    LoginError,
    NotLoggedIn,
    RefreshError,
    RevocationError,
    TokenInvalidated,
    TokenRotateError,
    TokenStoreError,
)

if TYPE_CHECKING:
    from ._keyring import KeyringTokenStore
    from ._postgres import PostgresTokenStore
    from ._redis import RedisTokenStore

__version__ = "0.2.0.dev0"

#: Public names whose modules import an optional extra: loaded on first use.
_LAZY = {
    "KeyringTokenStore": "._keyring",
    "PostgresTokenStore": "._postgres",
    "RedisTokenStore": "._redis",
}

__all__ = [
    "AdapterOptions",
    "ClientCredentialsGrant",
    "DeviceCode",
    "DiscoveryError",
    "FileTokenStore",
    "HeldLock",
    "InvalidConfiguration",
    "JWTBearerGrant",
    "KeyLock",
    "KeyringTokenStore",
    "LockLost",
    "LockTimeout",
    "LoginError",
    "MemoryTokenStore",
    "MountedAuth",
    "NotLoggedIn",
    "OAuthClient",
    "PostgresTokenStore",
    "RedisTokenStore",
    "RefreshError",
    "RefreshPolicy",
    "RefreshTokenGrant",
    "RevocationError",
    "Token",
    "TokenExchangeGrant",
    "TokenInvalidated",
    "TokenRotateAdapter",
    "TokenRotateAuth",
    "TokenRotateError",
    "TokenSource",
    "TokenStore",
    "TokenStoreError",
    "TransportOptions",
    "__version__",
    "login_browser",
    "login_device",
    "mount",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


logging.getLogger(__name__).addHandler(logging.NullHandler())
