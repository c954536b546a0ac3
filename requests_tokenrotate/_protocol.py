"""The store contract: what the refresh gate needs from a store, and nothing more.

A store keeps one token per key and grants, per key, the exclusive right to
refresh it. The gate (:class:`~requests_tokenrotate.TokenSource`) relies on
exactly this:

1. ``store.lock(key, timeout)`` grants the right to refresh ``key`` and yields
   a :class:`HeldLock`. It is released when the ``with`` block ends, and also
   when its holder dies: the kernel drops a file lock, PostgreSQL rolls back a
   dead session's transaction, a Redis lease expires.
2. Under the lock the gate reads the key through the held lock
   (:meth:`HeldLock.load`), which remembers what it read.
3. Right before each token-endpoint call, the gate asks
   :meth:`HeldLock.remaining`; with less than the call's deadline left it gives
   up with :class:`~requests_tokenrotate.LockLost` and makes no call. A lease
   can be lost while its holder still runs (a GC pause, a stopped process, a
   partition); a file lock cannot (``remaining()`` is infinite).
4. :meth:`HeldLock.save` is a compare-and-set on what step 2 read: a holder
   that lost its lease cannot overwrite a newer token, and its rejected save
   raises :class:`~requests_tokenrotate.LockLost` instead of being swallowed.
5. No backend failure leads to an unguarded refresh or a silent local
   fallback: a store that cannot lock raises ``LockTimeout`` or
   ``TokenStoreError``, and the gate then makes no call.

Stores written against 0.1, whose ``lock()`` yields nothing, still work: the
gate wraps them in :class:`KeyLock`, which reads and writes through the
store's own ``load``/``save``/``delete`` and cannot be lost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._token import Token


@runtime_checkable
class HeldLock(Protocol):
    """The right to refresh one key, as long as it is held.

    Only the code inside the ``with store.lock(key, timeout)`` block uses it.
    """

    def remaining(self) -> float:
        """Seconds the lock is still guaranteed to be held (``math.inf``: until released).

        :raises TokenStoreError: The backend cannot tell (it is unreachable).
        """
        ...

    def load(self) -> Token | None:
        """The key's token, read under the lock; remembered for :meth:`save`.

        :raises TokenStoreError: The stored value is unreadable or corrupt.
        """
        ...

    def save(self, token: Token) -> None:
        """Store ``token`` if the lock is held and the key still holds what :meth:`load` read.

        A successful save becomes what the next save compares with. If
        :meth:`load` found nothing readable (a corrupt value that a login
        replaces), only the lock is checked.

        :raises LockLost: The lock was lost, or the key changed since
            :meth:`load`; nothing was written.
        :raises TokenStoreError: The write failed; nothing was written.
        """
        ...

    def delete(self) -> None:
        """Remove the key's token (compare-and-set like :meth:`save`)."""
        ...


@runtime_checkable
class TokenStore(Protocol):
    """Where a :class:`~requests_tokenrotate.TokenSource` keeps its tokens.

    ``load`` is the lock-free read of the hot path's second check (a peer
    may have refreshed); everything that writes on behalf of the gate goes
    through :meth:`lock`. The contract every store keeps is described in the
    documentation ("Writing a store") and in this module: the lock is
    exclusive per key and dies with its holder; :class:`HeldLock` reports how
    long it is still held and compares-and-sets on save.

    ``save`` and ``delete`` outside a lock are for tools (imports, cleanup);
    the gate never uses them.
    """

    def load(self, key: str) -> Token | None:
        """The token stored for ``key``, or None (no lock needed).

        :raises TokenStoreError: The stored value is unreadable, corrupt or unsafe.
        """
        ...

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` for ``key`` unconditionally.

        :raises TokenStoreError: Nothing was written.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``'s token, if any."""
        ...

    def keys(self) -> list[str]:
        """Every key that holds a token."""
        ...

    def lock(self, key: str, timeout: float) -> AbstractContextManager[HeldLock | None]:
        """Hold the exclusive right to refresh ``key``.

        :param timeout: Seconds to wait for a busy lock.
        :raises LockTimeout: The lock stayed busy past ``timeout``.
        :raises TokenStoreError: The backend failed (nothing is held).
        """
        ...


class KeyLock:
    """A :class:`HeldLock` over a store's own ``load``/``save``/``delete``.

    For locks that cannot be lost while their holder lives (a file lock, a
    thread lock), where a compare-and-set is implied by the lock itself.
    """

    __slots__ = ("key", "store")

    def __init__(self, store: TokenStore, key: str) -> None:
        self.store = store
        self.key = key

    def remaining(self) -> float:
        return math.inf

    def load(self) -> Token | None:
        return self.store.load(self.key)

    def save(self, token: Token) -> None:
        self.store.save(self.key, token)

    def delete(self) -> None:
        self.store.delete(self.key)
