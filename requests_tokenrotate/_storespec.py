"""``store_from_spec``: the store a command-line ``--store SPEC`` names.

A directory path is a :class:`~requests_tokenrotate.FileTokenStore`;
``redis://``, ``rediss://`` and ``unix://`` URLs a
:class:`~requests_tokenrotate.RedisTokenStore`; ``keyring:SERVICE`` a
:class:`~requests_tokenrotate.KeyringTokenStore`. Each backend's module is
imported only when its scheme is used.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from .exceptions import InvalidConfiguration

if TYPE_CHECKING:
    from ._protocol import TokenStore

REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def store_from_spec(spec: str | None) -> TokenStore:
    """The store ``spec`` names (None or ``""``: the default token directory).

    :raises InvalidConfiguration: An unknown URL scheme, or the backend's
        library is not installed.
    """
    from ._stores import FileTokenStore

    if not spec:
        return FileTokenStore()
    if spec.startswith("keyring:") and not spec.startswith("keyring://"):
        from ._keyring import KeyringTokenStore

        service = spec[len("keyring:") :]
        return KeyringTokenStore(service) if service else KeyringTokenStore()
    match = _SCHEME.match(spec)
    if match is None:
        return FileTokenStore(spec)
    scheme = match.group(1).lower()
    if scheme in REDIS_SCHEMES:
        from ._redis import RedisTokenStore

        return RedisTokenStore(spec)
    raise InvalidConfiguration(
        f"unknown store scheme {scheme}://; use a directory path, a redis:// or "
        "rediss:// URL, or keyring:SERVICE"
    )


def describe(store: TokenStore) -> str:
    """Where ``store`` keeps its tokens, for humans (no password)."""
    directory = getattr(store, "directory", None)
    return str(directory) if directory is not None else repr(store)
