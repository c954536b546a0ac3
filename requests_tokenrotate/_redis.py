"""RedisTokenStore: one rotating credential shared by the processes of many hosts.

Layout under ``prefix`` (default ``tokenrotate:``), per key ``K``:

* ``<prefix>token:K`` the token, in the shared versioned JSON codec, with its
  generation (the number of saves);
* ``<prefix>lock:K`` the refresh lock: a random owner id set with
  ``SET NX PX lease``; it expires by itself if its holder dies;
* the pub/sub channel ``<prefix>released:K``: a release publishes on it, so
  waiters retry at once instead of polling.

Why a plain lease and not portalocker's ``RedisLock``: that lock ties
ownership to a live pub/sub subscription, but its own tracker reports
split-brain acquires (portalocker #137, #139), about 250 ms for an
uncontended acquire (#144), ``KeyboardInterrupt`` injected into waiters
unless ``interrupt_on_lost=False`` (#136), and its reaping needs the
``CLIENT KILL`` right that managed Redis often withholds. A lease can be lost
while its holder still runs (a GC pause, SIGSTOP, a partition); the store
contract makes that harmless: the gate checks :meth:`remaining` right before
the token call, and every save is a compare-and-set, in one Lua script, on
the lock's owner and the generation read under the lock. redis-py's own
``Lock`` is the same lease but polls every 100 ms; this one waits on the
release channel (a lost message costs at most :data:`FALLBACK_POLL`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import _codec
from ._redislease import ABSENT, ACQUIRE, ANY, RELEASE, REMAINING, WRITE, RedisLease
from .exceptions import InvalidConfiguration, LockTimeout, TokenStoreError

if TYPE_CHECKING:
    import redis

    from ._token import Token

logger = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "tokenrotate:"
#: Seconds a refresh lock is held at most: longer than a token call's deadline
#: (30 s by default), which the gate demands before each call.
DEFAULT_LEASE: Final = 45.0
#: Seconds any one store operation may take (redis-py's own defaults, a
#: 5 s socket timeout and three retries with backoff, would blow past it).
DEFAULT_TIMEOUT: Final = 2.0
#: A waiter re-checks the lock at least this often (a lost release message).
FALLBACK_POLL: Final = 0.2
#: Compare-and-set attempts of an unlocked (tool) save racing other writers.
_UNLOCKED_ATTEMPTS: Final = 8



def redact(url: str) -> str:
    """``url`` without its password (userinfo or ``?password=``)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:***@{hostport}"
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable Redis URL>"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisTokenStore:
    """Tokens in Redis; the refresh lock is a lease, saves compare-and-set.

    :param url: ``redis://[user:password@]host[:port][/db]``, ``rediss://``
        (TLS) or ``unix://``. The password never appears in reprs, logs or errors.
    :param client: A ``redis.Redis`` of your own instead of ``url`` (its
        timeouts and retries then apply: keep them within the lock timeout).
    :param prefix: Prepended to every Redis key and channel.
    :param lease: Seconds the refresh lock lives unless released; must exceed
        a token call's deadline (the gate refuses to call otherwise).
    :param timeout: Seconds any one Redis operation may take (socket and
        connect timeouts of half of it, one immediate retry for a dropped
        connection); past it, :class:`TokenStoreError`.
    :param wait_replicas: After each save, ``WAIT`` for this many replicas to
        acknowledge it (within ``timeout``), else :class:`TokenStoreError`.
    :raises InvalidConfiguration: Bad arguments, or redis-py is not installed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        lease: float = DEFAULT_LEASE,
        timeout: float = DEFAULT_TIMEOUT,
        wait_replicas: int = 0,
    ) -> None:
        if (url is None) == (client is None):
            raise InvalidConfiguration("RedisTokenStore needs either a url or a client")
        for name, value in (("lease", lease), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidConfiguration(f"RedisTokenStore {name} must be seconds > 0")
        replicas = wait_replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise InvalidConfiguration("RedisTokenStore wait_replicas must be an integer >= 0")
        self.url = url
        self.prefix = prefix
        self.lease = float(lease)
        self.timeout = float(timeout)
        self.wait_replicas = wait_replicas
        self._client = client if client is not None else self._connect(url or "")
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("acquire", ACQUIRE),
                ("remaining", REMAINING),
                ("release", RELEASE),
                ("write", WRITE),
            )
        }

    def _connect(self, url: str) -> redis.Redis:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise InvalidConfiguration(
                "RedisTokenStore needs redis-py: pip install 'requests-tokenrotate[redis]'"
            ) from None
        try:
            return redis.Redis.from_url(
                url,
                socket_timeout=self.timeout / 2,
                socket_connect_timeout=self.timeout / 2,
                retry=Retry(NoBackoff(), 1),  # one reconnect for a stale pooled connection
            )
        except ValueError:  # its text may quote the URL
            raise InvalidConfiguration(
                f"not a usable Redis URL: {redact(url)} (redis://, rediss:// or unix://)"
            ) from None

    def __repr__(self) -> str:
        where = redact(self.url) if self.url is not None else "client"
        return f"RedisTokenStore({where!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Close the connections of the store's own client (a ``client=`` passed in stays open).

        .. versionadded:: 0.2.0
        """
        if self.url is not None:
            self._client.close()
            self._client.connection_pool.disconnect()

    def __enter__(self) -> RedisTokenStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        if self.url is None:
            raise TypeError("a RedisTokenStore built on a client cannot be pickled; pass a url")
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_scripts")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["url"],
            prefix=state["prefix"],
            lease=state["lease"],
            timeout=state["timeout"],
            wait_replicas=state["wait_replicas"],
        )

    # -- names ---------------------------------------------------------------
    def token_key(self, key: str) -> str:
        """The Redis key that holds ``key``'s token."""
        if not isinstance(key, str) or not key:
            raise InvalidConfiguration("a token-store key must be a non-empty string")
        return f"{self.prefix}token:{key}"

    def lock_key(self, key: str) -> str:
        """The Redis key of ``key``'s refresh lock."""
        return f"{self.prefix}lock:{key}"

    def channel(self, key: str) -> str:
        """The pub/sub channel on which a release of ``key``'s lock is announced."""
        return f"{self.prefix}released:{key}"

    # -- errors ----------------------------------------------------------------
    def _failed(self, doing: str, key: str | None, exc: Exception) -> TokenStoreError:
        from redis import exceptions as errors

        if isinstance(exc, errors.ResponseError):  # READONLY, NOPERM, OOM ...: the code only
            detail = str(exc).split(" ", 1)[0] or type(exc).__name__
        elif isinstance(exc, errors.ConnectionError | errors.TimeoutError):
            detail = f"{type(exc).__name__}: {exc}"
        else:
            detail = type(exc).__name__
        if self.url is not None:
            password = urlsplit(self.url).password
            if password:
                detail = detail.replace(password, "***")
        where = redact(self.url) if self.url is not None else "Redis"
        return TokenStoreError(
            f"{where}: could not {doing} ({detail}); check that Redis is up and reachable",
            path=None if key is None else self.token_key(key),
        )

    @contextlib.contextmanager
    def _errors(self, doing: str, key: str | None) -> Iterator[None]:
        from redis.exceptions import RedisError

        try:
            yield
        except RedisError as exc:
            raise self._failed(doing, key, exc) from None

    # -- reading -------------------------------------------------------------
    def _get(self, key: str) -> bytes | str | None:
        with self._errors("read the token", key):
            raw: bytes | str | None = self._client.get(self.token_key(key))
        return raw

    def _decode(self, key: str, raw: bytes | str) -> _codec.Stored:
        return _codec.decode(raw, path=self.token_key(key), what="Redis key")

    def _read(self, key: str) -> _codec.Stored | None:
        raw = self._get(key)
        return None if raw is None else self._decode(key, raw)

    def load(self, key: str) -> Token | None:
        """The token stored for ``key``, or None.

        :raises TokenStoreError: Redis is unreachable, or the value is corrupt.
        """
        stored = self._read(key)
        return None if stored is None else stored.token

    def keys(self) -> list[str]:
        """Every key that holds a token (``SCAN``, so thousands of keys never block Redis)."""
        start = f"{self.prefix}token:"
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in start) + "*"
        with self._errors("list the keys", None):
            names = list(self._client.scan_iter(match=pattern, count=1000))
        return sorted({_text(name)[len(start) :] for name in names})

    # -- writing -------------------------------------------------------------
    def _write(self, key: str, owner: str, expected: str, document: bytes | str) -> int:
        with self._errors("write the token", key):
            return int(
                self._scripts["write"](
                    keys=[self.lock_key(key), self.token_key(key)],
                    args=[owner, expected, document],
                )
            )

    def _replicate(self, key: str) -> None:
        if not self.wait_replicas:
            return
        with self._errors("wait for the replicas", key):
            # WAIT blocks in Redis: keep it inside the socket timeout (half of timeout).
            window = self.timeout * 0.4
            acked = int(self._client.wait(self.wait_replicas, int(window * 1000)))
        if acked < self.wait_replicas:
            raise TokenStoreError(
                f"{self!r}: the token for {key!r} reached only {acked} of "
                f"{self.wait_replicas} replicas within {window:g} s",
                path=self.token_key(key),
            )

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` for ``key`` unconditionally (tools; the gate saves under the lock).

        :raises TokenStoreError: Redis is unreachable; nothing was written.
        """
        for _ in range(_UNLOCKED_ATTEMPTS):  # another writer in between: read again
            raw = self._get(key)
            expected, generation = ABSENT, 1
            if raw is not None:
                try:
                    stored = self._decode(key, raw)
                except TokenStoreError:  # a corrupt value is what a save replaces
                    expected = ANY
                else:
                    expected, generation = str(stored.generation), stored.generation + 1
            document = _codec.encode(key, token, generation)
            if self._write(key, "", expected, document) == 1:
                self._replicate(key)
                return
        raise TokenStoreError(
            f"{self!r}: {key!r} kept changing while it was being saved; try again",
            path=self.token_key(key),
        )

    def delete(self, key: str) -> None:
        """Remove ``key``'s token, if any."""
        with self._errors("delete the token", key):
            self._client.delete(self.token_key(key))

    # -- the refresh lock ----------------------------------------------------
    def _try_acquire(self, key: str, owner: str) -> int | None:
        """None if acquired, else the lock's PTTL in ms."""
        with self._errors("take the refresh lock", key):
            pttl = int(
                self._scripts["acquire"](
                    keys=[self.lock_key(key)], args=[owner, int(self.lease * 1000)]
                )
            )
        return None if pttl == -3 else pttl

    def _acquire(self, key: str, timeout: float) -> str:
        owner = secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        pttl = self._try_acquire(key, owner)
        if pttl is None:
            return owner
        with self._errors("wait for the refresh lock", key):
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            with self._errors("wait for the refresh lock", key):
                pubsub.subscribe(self.channel(key))
                pubsub.get_message(timeout=self.timeout)  # the confirmation: now listening
            for _ in range(int(timeout / 0.001) + 2):  # bounded: each turn waits >= 1 ms
                pttl = self._try_acquire(key, owner)
                if pttl is None:
                    return owner
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                expiry = pttl / 1000 if pttl > 0 else FALLBACK_POLL
                wait = max(min(left, expiry, FALLBACK_POLL), 0.001)
                with self._errors("wait for the refresh lock", key):
                    pubsub.get_message(timeout=wait)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()
        raise LockTimeout(
            f"the refresh lock {self.lock_key(key)!r} stayed busy for {timeout:g} s; "
            "another process may be refreshing. Try again.",
            key=key,
        )

    def _release(self, key: str, owner: str) -> None:
        try:
            with self._errors("release the refresh lock", key):
                released = self._scripts["release"](
                    keys=[self.lock_key(key)], args=[owner, self.channel(key)]
                )
        except TokenStoreError as exc:  # the lease expires by itself
            logger.warning("%s (the lock expires within %g s)", exc.message, self.lease)
            return
        if not released:
            logger.warning("%s: the refresh lock of %r expired before its release", self, key)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[RedisLease]:
        """Hold ``key``'s refresh lock: a lease of :attr:`lease` seconds.

        :param timeout: Seconds to wait for a busy lock.
        :raises LockTimeout: The lock stayed busy past ``timeout``.
        :raises TokenStoreError: Redis failed; nothing is held.
        """
        self.token_key(key)  # validates the key
        started = time.monotonic()
        owner = self._acquire(key, max(timeout, 0.0))
        logger.debug("%s: lock acquired after %.1f ms", key, (time.monotonic() - started) * 1e3)
        try:
            yield RedisLease(self, key, owner)
        finally:
            self._release(key, owner)
