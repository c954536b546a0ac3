"""``--store SPEC``: one function that turns a command-line spec into a store.

A directory path (:class:`FileTokenStore`), ``postgresql://…`` or
``postgres://…`` (:class:`PostgresTokenStore`; a ``table=`` query parameter
names the table), ``keyring:SERVICE`` (:class:`KeyringTokenStore`). Each
store's module is imported only when its scheme is used.
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
        return _postgres(spec)
    if lowered.startswith("keyring:"):
        from ._keyring import KeyringTokenStore

        return KeyringTokenStore(spec.partition(":")[2] or "requests-tokenrotate")
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise InvalidConfiguration(
            f"--store: unknown scheme {scheme!r}; use a directory or postgresql://…"
        )
    from ._stores import FileTokenStore

    return FileTokenStore(spec)


def _postgres(spec: str) -> TokenStore:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from ._postgres import DEFAULT_TABLE, PostgresTokenStore

    parts = urlsplit(spec)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [value for name, value in query if name == "table"]
    rest = urlencode([(name, value) for name, value in query if name != "table"])
    dsn = urlunsplit(parts._replace(query=rest))
    return PostgresTokenStore(dsn, table=tables[-1] if tables else DEFAULT_TABLE)
