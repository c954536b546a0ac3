"""``--store SPEC``: one function that turns a command-line spec into a store.

A directory path (:class:`FileTokenStore`), ``postgresql://…`` or
``postgres://…`` (:class:`PostgresTokenStore`). Each store's module is
imported only when its scheme is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import InvalidConfiguration

if TYPE_CHECKING:
    from ._protocol import TokenStore

_POSTGRES = ("postgresql://", "postgres://")


def store_from_spec(spec: str) -> TokenStore:
    """The store ``spec`` names.

    :raises InvalidConfiguration: An empty spec or an unknown URL scheme.
    """
    if not spec:
        raise InvalidConfiguration("--store needs a directory or a URL such as postgresql://…")
    lowered = spec.lower()
    if lowered.startswith(_POSTGRES):
        from ._postgres import PostgresTokenStore

        return PostgresTokenStore(spec)
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise InvalidConfiguration(
            f"--store: unknown scheme {scheme!r}; use a directory or postgresql://…"
        )
    from ._stores import FileTokenStore

    return FileTokenStore(spec)
