"""OAuth2 bearer tokens for requests, rotated transparently and single-flight.

See README.rst and docs/ for the quick start. Everything public is re-exported here;
no user should need to import a ``_module``.
"""

from __future__ import annotations

import logging

from ._adapter import TokenRotateAdapter, mount
from ._auth import TokenRotateAuth
from ._endpoint import OAuthClient
from ._grants import (
    ClientCredentialsGrant,
    JWTBearerGrant,
    RefreshTokenGrant,
    TokenExchangeGrant,
)
from ._source import RefreshPolicy, TokenSource
from ._stores import FileTokenStore, MemoryTokenStore, TokenStore
from ._token import Token
from .exceptions import (
    DiscoveryError,
    InvalidConfiguration,
    LockTimeout,
    NotLoggedIn,
    RefreshError,
    TokenInvalidated,
    TokenRotateError,
    TokenStoreError,
)

__version__ = "0.2.0.dev0"

__all__ = [
    "ClientCredentialsGrant",
    "DiscoveryError",
    "FileTokenStore",
    "InvalidConfiguration",
    "JWTBearerGrant",
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
    "__version__",
    "mount",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
