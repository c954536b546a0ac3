"""The held lock of :class:`~requests_tokenrotate.PostgresTokenStore` (see ``_postgres``).

A transaction on the lock's own connection holds
``pg_advisory_xact_lock(hashtext(table), hashtext(key))``; the save commits it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from . import _codec
from .exceptions import LockLost, LockTimeout, TokenStoreError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from ._postgres import PostgresTokenStore
    from ._token import Token

    Connection = psycopg.Connection[Any]

logger = logging.getLogger(__name__)

_WAIT: Final = "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))::text"
_TRY: Final = "SELECT pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))::text"


def _ms(seconds: float) -> str:
    return str(max(1, math.ceil(seconds * 1000)))  # 0 would mean "no limit"


class PostgresLock:
    """The :class:`~requests_tokenrotate.HeldLock` of :class:`PostgresTokenStore`.

    The advisory lock lives as long as the transaction: :meth:`save` commits
    it, and a later call under the same ``with`` takes the lock again without
    waiting (or reports it lost).
    """

    __slots__ = ("_conn", "_dead", "_expected", "_loaded", "_open", "key", "store")

    def __init__(self, store: PostgresTokenStore, conn: Connection, key: str) -> None:
        self.store = store
        self.key = key
        self._conn = conn
        self._open = False
        self._dead = False
        self._loaded = False
        self._expected: int | None = None

    def __repr__(self) -> str:
        return f"PostgresLock({self.store.path(self.key)}, open={self._open})"

    def _lost(self, why: str) -> LockLost:
        return LockLost(f"the refresh lock for {self.key!r} was lost: {why}", key=self.key)

    @contextlib.contextmanager
    def _on_session(self, doing: str) -> Iterator[None]:
        """Typed errors; a failure that ends the session ends the lock for good."""
        if self._dead:
            raise TokenStoreError(
                f"PostgreSQL {self.store._where}: cannot {doing}: the session holding the "
                f"refresh lock for {self.key!r} ended (terminated or failed over); nothing "
                "was written",
                key=self.key,
                path=self.store.path(self.key),
            )
        try:
            with self.store._translated(self.key, doing):
                yield
        except (TokenStoreError, LockTimeout):
            if self._conn.closed or self._conn.broken:
                self._dead = True
                self._open = False
            raise

    def begin(self, timeout: float | None) -> bool:
        """Open the transaction and take the lock (``timeout`` None: only if free now)."""
        store = self.store
        with self._on_session("take the refresh lock"):
            conn = self._conn
            conn.execute("BEGIN")
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true), "
                "set_config('idle_in_transaction_session_timeout', %s, true)",
                (_ms(timeout or 0.001), _ms(store.lease)),
            )
            row = conn.execute(
                _WAIT if timeout is not None else _TRY,
                (store.table, self.key),
            ).fetchone()
            if timeout is None and not (row and row[0] == "true"):
                conn.rollback()
                return False
        self._open = True
        return True

    def end(self) -> None:
        """Roll back what is still open (nothing to write: the save commits)."""
        if self._open and not self._dead:
            with (
                contextlib.suppress(TokenStoreError, LockTimeout),
                self._on_session("release the refresh lock"),
            ):
                self._conn.rollback()
        self._open = False

    def _reopen(self) -> None:
        if not self._open and not self.begin(None):
            raise self._lost("another process took it after our save; try again")

    def remaining(self) -> float:
        """The lease left, after one round trip proving the session still holds the lock.

        0 if the session ended (the server released the lock) or another
        process took the lock after our save.
        """
        if self._dead:
            return 0.0
        try:
            if not self._open:
                return self.store.lease if self.begin(None) else 0.0
            with self._on_session("check the refresh lock"):
                self._conn.execute("SELECT 1")
        except (TokenStoreError, LockTimeout) as exc:
            logger.warning("%s: the refresh lock is gone: %s", self.key, exc)
            return 0.0
        return self.store.lease

    def load(self) -> Token | None:
        self._reopen()
        query = self.store._sql("SELECT generation, document::text FROM {} WHERE key = %s")
        with self._on_session("read"):
            row = self._conn.execute(query, (self.key,)).fetchone()
        self._loaded = True
        self._expected = None if row is None else int(row[0])
        return None if row is None else self.store._decode(self.key, row[1]).token

    def _write(self, query: sql.Composed, params: tuple[Any, ...], doing: str) -> None:
        with self._on_session(doing):
            count = self._conn.execute(query, params).rowcount
            if count != 1:
                self._conn.rollback()
                self._open = False
                raise self._lost(f"the stored token changed since it was read; nothing was {doing}")
            self._conn.commit()
        self._open = False

    def save(self, token: Token) -> None:
        self._reopen()
        if not self._loaded:
            with contextlib.suppress(TokenStoreError):
                self.load()
        expected, key = self._expected, self.key
        if expected is None:
            query = self.store._sql(
                "INSERT INTO {} (key, document, generation) VALUES (%s, %s::jsonb, 1) "
                "ON CONFLICT (key) DO NOTHING"
            )
            self._write(query, (key, _codec.encode(key, token, 1).decode()), "written")
            self._expected = 1
        else:
            query = self.store._sql(
                "UPDATE {} SET document = %s::jsonb, generation = generation + 1, "
                "updated_at = now() WHERE key = %s AND generation = %s"
            )
            document = _codec.encode(key, token, expected + 1).decode()
            self._write(query, (document, key, expected), "written")
            self._expected = expected + 1

    def delete(self) -> None:
        self._reopen()
        if not self._loaded:
            with contextlib.suppress(TokenStoreError):
                self.load()
        if self._expected is None:
            self.end()
            return
        query = self.store._sql("DELETE FROM {} WHERE key = %s AND generation = %s")
        self._write(query, (self.key, self._expected), "deleted")
        self._expected = None
