"""The Redis refresh lock: its Lua scripts and the held lease (:class:`RedisLease`).

Every step that must be atomic is one script: acquiring the lease
(``SET NX PX``), reading what is left of it, releasing it (and publishing the
release so waiters retry at once), and the compare-and-set write on the
lock's owner and the generation read under the lock. :class:`RedisTokenStore`
(in :mod:`._redis`) loads the scripts and yields a :class:`RedisLease`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from . import _codec
from .exceptions import LockLost

if TYPE_CHECKING:
    from ._redis import RedisTokenStore
    from ._token import Token

__all__ = ["ABSENT", "ACQUIRE", "ANY", "RELEASE", "REMAINING", "WRITE", "RedisLease"]

# KEYS[1] lock; ARGV[1] owner, ARGV[2] lease ms. Acquired: -3; else the lock's PTTL.
ACQUIRE: Final = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -3 end
return redis.call('pttl', KEYS[1])
"""
# KEYS[1] lock; ARGV[1] owner. The lock's PTTL if we own it, else -1.
REMAINING: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pttl', KEYS[1]) end
return -1
"""
# KEYS[1] lock; ARGV[1] owner, ARGV[2] channel. 1 released, 0 not ours any more.
RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', ARGV[2], '1')
  return 1
end
return 0
"""
# KEYS[1] lock, KEYS[2] token; ARGV[1] owner ('' = no lock check), ARGV[2] the
# expected generation ('' = absent, '*' = anything), ARGV[3] document ('' = delete).
# 1 written, 0 the lock is not ours, -1 the generation moved on.
WRITE: Final = """
if ARGV[1] ~= '' and redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '*' then
  local current = redis.call('get', KEYS[2])
  if ARGV[2] == '' then
    if current then return -1 end
  else
    if not current then return -1 end
    local ok, doc = pcall(cjson.decode, current)
    if not ok or type(doc) ~= 'table' then return -1 end
    local generation = doc['generation'] or 0
    if type(generation) ~= 'number' or generation ~= tonumber(ARGV[2]) then return -1 end
  end
end
if ARGV[3] == '' then redis.call('del', KEYS[2]) else redis.call('set', KEYS[2], ARGV[3]) end
return 1
"""
ABSENT: Final = ""
ANY: Final = "*"


class RedisLease:
    """A held Redis refresh lock (:class:`~requests_tokenrotate.HeldLock`).

    :meth:`save` and :meth:`delete` are one Lua script each: written only if
    the lock's owner is still us and the generation is still what
    :meth:`load` read; the new document carries the next generation.
    """

    __slots__ = ("_expected", "_generation", "_owner", "_store", "key")

    def __init__(self, store: RedisTokenStore, key: str, owner: str) -> None:
        self._store = store
        self.key = key
        self._owner = owner
        self._expected = ANY  # nothing read yet: only the lock is checked
        self._generation = 0

    def __repr__(self) -> str:
        return f"RedisLease({self.key!r})"

    def remaining(self) -> float:
        """Seconds left on the lease (0.0 if it is no longer ours)."""
        store = self._store
        started = time.monotonic()
        with store._errors("check the refresh lock", self.key):
            pttl = int(
                store._scripts["remaining"](keys=[store.lock_key(self.key)], args=[self._owner])
            )
        if pttl < 0:
            return 0.0
        # The PTTL was read somewhere inside the round trip: count it as spent.
        return max(pttl / 1000 - (time.monotonic() - started), 0.0)

    def load(self) -> Token | None:
        raw = self._store._get(self.key)
        if raw is None:
            self._expected, self._generation = ABSENT, 0
            return None
        self._expected, self._generation = ANY, 0  # if corrupt: what a login replaces
        stored = self._store._decode(self.key, raw)
        self._expected, self._generation = str(stored.generation), stored.generation
        return stored.token

    def _commit(self, document: bytes | str, generation: int, doing: str) -> None:
        result = self._store._write(self.key, self._owner, self._expected, document)
        if result == 1:
            self._expected = ABSENT if not document else str(generation)
            self._generation = generation
            self._store._replicate(self.key)
            return
        why = "its lease expired" if result == 0 else "the stored token changed since it was read"
        raise LockLost(
            f"did not {doing} the token of {self.key!r}: {why}; a newer token is kept. Try again.",
            key=self.key,
        )

    def save(self, token: Token) -> None:
        generation = self._generation + 1
        self._commit(_codec.encode(self.key, token, generation), generation, "save")

    def delete(self) -> None:
        self._commit("", 0, "delete")
