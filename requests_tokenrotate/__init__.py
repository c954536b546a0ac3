"""OAuth2 bearer tokens for requests, rotated transparently and single-flight.

See README.rst and docs/ for the quick start. Everything public is re-exported here;
no user should need to import a ``_module``.
"""

from __future__ import annotations

import logging

from ._adapter import TokenRotateAdapter, mount
from ._auth import TokenRotateAuth
from ._browser import login_browser
from ._endpoint import OAuthClient
from ._grants import (
    ClientCredentialsGrant,
    JWTBearerGrant,
    RefreshTokenGrant,
    TokenExchangeGrant,
)
from ._login import DeviceCode, login_device
from ._protocol import HeldLock, KeyLock, TokenStore
from ._source import RefreshPolicy, TokenSource
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

__version__ = "0.2.0.dev0"

__all__ = [
    "ClientCredentialsGrant",
    "DeviceCode",
    "DiscoveryError",
    "FileTokenStore",
    "HeldLock",
    "InvalidConfiguration",
    "JWTBearerGrant",
    "KeyLock",
    "LockLost",
    "LockTimeout",
    "LoginError",
    "MemoryTokenStore",
    "NotLoggedIn",
    "OAuthClient",
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
    "__version__",
    "login_browser",
    "login_device",
    "mount",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
