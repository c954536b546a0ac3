"""OAuth2 bearer tokens for requests, rotated transparently and single-flight.

See README.rst for the quick start. Everything public is re-exported here;
no user should need to import a ``_module``.
"""

from __future__ import annotations

import logging

from ._adapter import AdapterOptions, TokenRotateAdapter, mount
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
from ._transport import TransportOptions
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
    "AdapterOptions",
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
    "TransportOptions",
    "__version__",
    "mount",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
