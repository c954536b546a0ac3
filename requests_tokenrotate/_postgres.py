"""PostgresTokenStore: tokens in a PostgreSQL table, the durable system of record.

One row per key: the shared versioned JSON document (:mod:`._codec`) in a
``jsonb`` column, a ``generation`` that counts the key's saves, and
``updated_at``. See :meth:`PostgresTokenStore.ddl`.

The refresh lock is a transaction-scoped advisory lock,
``pg_advisory_xact_lock(hashtext(table), hashtext(key))``, taken by a
transaction that stays open for one refresh on a connection of its own and
committed by the save. Why an advisory lock rather than ``SELECT ... FOR UPDATE``
on the key's row:

- it exists before the row does: the first login of a new tenant needs no
  placeholder row (which ``keys()`` would list and a ``DELETE`` under the lock
  would drop together with its lock);
- unlocked readers and tools never wait on it (a row lock blocks every
  ``UPDATE`` of the row, including an administrator's);
- like every transaction-scoped lock it works through PgBouncer's transaction
  pooling, and it dies with its holder: a crashed process closes its socket and
  PostgreSQL rolls back and releases at once, with no lease to wait out.

The two-``int4`` key form lives in its own space, apart from the single
``bigint`` locks other applications may take; a hash collision between two
keys only serialises their refreshes. Correctness never rests on the lock
alone: every save is a compare-and-set on ``generation``.

A session can end under a live holder (``pg_terminate_backend``, a failover,
``idle_in_transaction_session_timeout``): :meth:`PostgresLock.remaining` makes
one round trip on the lock's connection and reports 0 if the session is gone,
so the gate makes no token call; a save on a dead session raises
:class:`~requests_tokenrotate.TokenStoreError` and is never retried on a new
connection. The transaction's ``idle_in_transaction_session_timeout`` is the
lock's lease (``lease=``): a holder stopped or cut off mid-refresh loses its
session after that long and the others proceed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from . import _codec
from ._gate import PicklesWithoutLocks
from ._pglock import PostgresLock, _ms
from ._token import Token
from .exceptions import InvalidConfiguration, LockTimeout, TokenStoreError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import psycopg
    from psycopg import sql

    Connection = psycopg.Connection[Any]

logger = logging.getLogger(__name__)

DEFAULT_TABLE: Final = "requests_tokenrotate_tokens"
#: Seconds to establish a connection (libpq's ``connect_timeout``, at least 2).
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
#: Seconds one query may run (``statement_timeout``), and the TCP bound on a
#: silent server (``tcp_user_timeout``).
DEFAULT_STATEMENT_TIMEOUT: Final = 10.0
#: Seconds a refresh transaction may stay idle before the server ends it
#: (``idle_in_transaction_session_timeout``): longer than a token call's
#: deadline (30 s), shorter than the gate's lock timeout (60 s).
DEFAULT_LEASE: Final = 45.0

_HINT: Final = "log in again (or log out) to replace it"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidConfiguration("a token-store key must be a non-empty string")


def _table_parts(table: str) -> tuple[str, ...]:
    parts = tuple(table.split(".", 1)) if isinstance(table, str) else ()
    if not parts or not all(parts):
        raise InvalidConfiguration("table must be a non-empty name, optionally schema.name")
    return parts


class PostgresTokenStore(PicklesWithoutLocks):
    """Tokens in a PostgreSQL table; the refresh lock is a transaction-scoped advisory lock.

    Needs the ``postgres`` extra (``pip install "requests-tokenrotate[postgres]"``,
    psycopg 3). No connection is held while idle: each lock and each unlocked
    read opens one and closes it (or returns it to your pool).

    :param dsn: A libpq connection string or URL (``postgresql://user:pw@host/db``).
    :param connection: Instead of ``dsn``: a callable returning a context
        manager that yields a psycopg connection, e.g. ``pool.connection`` of a
        ``psycopg_pool.ConnectionPool``, or ``lambda: psycopg.connect(...)``.
    :param table: The table, optionally ``schema.table``; quoted as an identifier.
    :param create_table: Create the table on first use if it is missing (needs
        the CREATE privilege once). False: run :meth:`ddl` yourself.
    :param connect_timeout: Seconds to connect (libpq rounds up to whole
        seconds, at least 2). Ignored with ``connection=``.
    :param statement_timeout: Seconds any one query may take.
    :param lease: Seconds a refresh transaction may stay idle before the server
        ends it and so releases the lock; must exceed the token call's deadline.
    :raises InvalidConfiguration: Bad arguments or a malformed DSN.

    .. versionadded:: 0.2.0
    """

    _LOCKS = ("_ready_lock",)

    def __init__(
        self,
        dsn: str | None = None,
        *,
        connection: Callable[[], AbstractContextManager[Connection]] | None = None,
        table: str = DEFAULT_TABLE,
        create_table: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if (dsn is None) == (connection is None):
            raise InvalidConfiguration("PostgresTokenStore needs a dsn or connection=, not both")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("statement_timeout", statement_timeout),
            ("lease", lease),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidConfiguration(f"{name} must be a positive number of seconds")
        self.table = table
        self._parts = _table_parts(table)
        self.create_table_if_missing = create_table
        self.connect_timeout = float(connect_timeout)
        self.statement_timeout = float(statement_timeout)
        self.lease = float(lease)
        self._dsn = dsn
        self._factory = connection
        self._secrets: tuple[str, ...] = ()
        self._where = "(connection factory)"
        if dsn is not None:
            from psycopg.conninfo import conninfo_to_dict

            try:
                params = conninfo_to_dict(dsn)
            except Exception:  # its message quotes the DSN
                raise InvalidConfiguration("the PostgreSQL DSN is malformed") from None
            password = str(params.get("password") or "")
            self._secrets = (password, quote(password, safe="")) if password else ()
            host = params.get("host") or params.get("hostaddr") or "localhost"
            self._where = (
                f"{params.get('user') or ''}{'@' if params.get('user') else ''}"
                f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
            )
        self._ready = not create_table
        self._ready_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresTokenStore({self._where!r}, table={self.table!r})"

    # -- schema --------------------------------------------------------------
    @staticmethod
    def _ddl(ident: sql.Identifier) -> sql.Composed:
        from psycopg import sql

        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (\n"
            "    key text PRIMARY KEY,\n"
            "    document jsonb NOT NULL,\n"
            "    generation bigint NOT NULL CHECK (generation > 0),\n"
            "    updated_at timestamptz NOT NULL DEFAULT now()\n"
            ")"
        ).format(ident)

    @classmethod
    def ddl(cls, table: str = DEFAULT_TABLE) -> str:
        """The ``CREATE TABLE`` statement for ``table``, for deployments that run DDL themselves.

        The application's role then needs SELECT, INSERT, UPDATE and DELETE on it.
        """
        from psycopg import sql

        return cls._ddl(sql.Identifier(*_table_parts(table))).as_string(None)

    def create_table(self) -> None:
        """Create the table if it does not exist (what ``create_table=True`` does on first use).

        :raises TokenStoreError: The server refused (no CREATE privilege) or is down.
        """
        with self._connection(None, "create the table") as conn:
            self._create(conn)

    def _ident(self) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(*self._parts)

    def _create(self, conn: Connection) -> None:
        import psycopg

        name = self._ident().as_string(conn)
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if not (exists and exists[0]):
            # Many processes may race to create it on first use.
            with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                with conn.transaction():
                    conn.execute(self._ddl(self._ident()))
                logger.info("created the token table %s", name)
        conn.commit()
        self._ready = True

    # -- connections and errors ------------------------------------------------
    def _clean(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]

    def _error(self, exc: BaseException, key: str | None, doing: str) -> TokenStoreError:
        return TokenStoreError(
            f"PostgreSQL {self._where}: cannot {doing}: {self._clean(exc)}",
            key=key,
            path=self.path(key) if key else self.table,
        )

    @contextlib.contextmanager
    def _translated(self, key: str | None, doing: str) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.errors.LockNotAvailable:
            raise LockTimeout(
                f"the refresh lock for {key!r} in {self.table} stayed busy; another process "
                "may be stuck refreshing. Try again.",
                key=key,
            ) from None
        except psycopg.Error as exc:
            raise self._error(exc, key, doing) from None

    def _connect(self) -> AbstractContextManager[Connection]:
        if self._factory is not None:
            return self._factory()
        import psycopg

        return psycopg.connect(
            self._dsn or "",
            autocommit=True,
            connect_timeout=max(2, math.ceil(self.connect_timeout)),
            tcp_user_timeout=_ms(self.statement_timeout),
            application_name="requests-tokenrotate",
        )

    @contextlib.contextmanager
    def _connection(self, key: str | None, doing: str) -> Iterator[Connection]:
        """A connection (the table ensured); errors come out typed."""
        with contextlib.ExitStack() as stack:
            with self._translated(key, doing):
                conn = stack.enter_context(self._connect())
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (_ms(self.statement_timeout),),
                )
                if not self._ready:
                    with self._ready_lock:
                        if not self._ready:
                            self._create(conn)
            yield conn
            if not conn.closed:  # a session that ended under a lock has nothing to end
                with self._translated(key, doing):
                    conn.commit()  # a no-op in autocommit; ends a pool's implicit transaction

    def path(self, key: str) -> str:
        """How errors name ``key``'s row."""
        return f"{self.table}[{key!r}]"

    # -- unlocked access ---------------------------------------------------------
    def load(self, key: str) -> Token | None:
        """The token stored for ``key``, or None (one connection, one query).

        :raises TokenStoreError: The database is unreachable or the row corrupt.
        """
        _check_key(key)
        query = self._sql("SELECT document::text FROM {} WHERE key = %s")
        with self._connection(key, "read") as conn, self._translated(key, "read"):
            row = conn.execute(query, (key,)).fetchone()
        return None if row is None else self._decode(key, row[0]).token

    def _decode(self, key: str, raw: str) -> _codec.Stored:
        return _codec.decode(raw, path=self.path(key), what="token row", hint=_HINT)

    def _sql(self, template: str) -> sql.Composed:
        from psycopg import sql

        return sql.SQL(template).format(self._ident())

    def keys(self) -> list[str]:
        """Every key with a row, sorted."""
        with self._connection(None, "list keys") as conn, self._translated(None, "list keys"):
            rows = conn.execute(self._sql("SELECT key FROM {} ORDER BY key")).fetchall()
        return [row[0] for row in rows]

    def items(self) -> Iterator[tuple[str, Token | TokenStoreError]]:
        """Every key with its token (or the error its row gives), in one query.

        ``tokenrotate status`` uses it to list thousands of tenants quickly.
        """
        query = self._sql("SELECT key, document::text FROM {} ORDER BY key")
        with self._connection(None, "list keys") as conn, self._translated(None, "list keys"):
            rows = conn.execute(query).fetchall()
        for key, raw in rows:
            try:
                yield key, self._decode(key, raw).token
            except TokenStoreError as exc:
                yield key, exc

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` for ``key`` unconditionally (tools; the gate saves under the lock).

        :raises TokenStoreError: Nothing was written.
        """
        _check_key(key)
        query = self._sql(
            "INSERT INTO {0} AS t (key, document, generation) VALUES (%s, %s::jsonb, 1) "
            "ON CONFLICT (key) DO UPDATE SET generation = t.generation + 1, "
            "document = jsonb_set(excluded.document, '{{generation}}', "
            "to_jsonb(t.generation + 1)), updated_at = now()"
        )
        document = _codec.encode(key, token, 1).decode()
        with self._connection(key, "write") as conn, self._translated(key, "write"):
            conn.execute(query, (key, document))

    def delete(self, key: str) -> None:
        """Remove ``key``'s row, if any."""
        _check_key(key)
        with self._connection(key, "delete") as conn, self._translated(key, "delete"):
            conn.execute(self._sql("DELETE FROM {} WHERE key = %s"), (key,))

    # -- the lock ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[PostgresLock]:
        """Hold ``key``'s advisory lock in a transaction on a connection of its own.

        :param timeout: Seconds to wait for a busy lock (PostgreSQL's ``lock_timeout``).
        :raises LockTimeout: The lock stayed busy past ``timeout``.
        :raises TokenStoreError: The database is unreachable (nothing is held).
        """
        _check_key(key)
        started = time.monotonic()
        with self._connection(key, "take the refresh lock") as conn:
            held = PostgresLock(self, conn, key)
            try:
                held.begin(timeout)
                logger.debug(
                    "lock %s acquired after %.1f ms",
                    self.path(key),
                    (time.monotonic() - started) * 1e3,
                )
                yield held
            finally:
                held.end()
