"""The per-key gate: a thread lock first, then the store's cross-process lock.

A portalocker lock shared by two threads does not exclude them, so the thread
lock always comes first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ._protocol import KeyLock
from .exceptions import LockTimeout

if TYPE_CHECKING:
    from ._protocol import HeldLock, TokenStore

logger = logging.getLogger(__name__)


class PicklesWithoutLocks:
    """Pickles without its thread locks and makes new ones on load (as HTTPAdapter does).

    Subclasses name their lock attributes in ``_LOCKS``.
    """

    _LOCKS: ClassVar[tuple[str, ...]] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._LOCKS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self._LOCKS:
            setattr(self, name, threading.Lock())


class Gate(PicklesWithoutLocks):
    """Serialises refreshes of one key, within a process and across processes."""

    _LOCKS = ("_thread_lock",)

    def __init__(self, store: TokenStore, key: str, timeout: float) -> None:
        self.store = store
        self.key = key
        self.timeout = timeout
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def threads(self) -> Iterator[float]:
        """Hold the in-process lock; yields the monotonic deadline for the whole gate."""
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise LockTimeout(
                f"another thread kept refreshing for more than {self.timeout:g} s; try again",
                key=self.key,
            )
        try:
            yield deadline
        finally:
            self._thread_lock.release()

    @contextlib.contextmanager
    def processes(self, deadline: float) -> Iterator[HeldLock]:
        """Hold the store's lock for the key, waiting at most until ``deadline``.

        Yields the store's :class:`HeldLock` (a :class:`KeyLock` for stores
        whose ``lock()`` yields nothing).
        """
        remaining = max(deadline - time.monotonic(), 0.0)
        logger.debug("waiting for the refresh lock of %r (up to %.1f s)", self.key, remaining)
        with self.store.lock(self.key, remaining) as held:
            yield KeyLock(self.store, self.key) if held is None else held
