"""Token stores: where tokens live between requests, threads and processes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote

from . import _codec
from ._files import (
    MAX_FILE_BYTES,
    TEMP_PREFIX,
    UnsafeFile,
    list_private,
    open_private,
    private_directory,
    read_private,
    remove_private,
    remove_stale_temp_files,
    write_atomically,
)
from ._gate import PicklesWithoutLocks
from ._protocol import KeyLock
from ._token import Token
from .exceptions import InvalidConfiguration, LockTimeout, TokenStoreError

logger = logging.getLogger(__name__)

#: Environment variable that overrides the default token directory.
HOME_ENV: Final = "REQUESTS_TOKENROTATE_HOME"
#: How often a waiter polls a busy lock file. portalocker's default is 0.25 s;
#: bench/handoff.py measured a p50 handoff of 4.7 ms here (230 ms at 0.25 s).
LOCK_CHECK_INTERVAL: Final = 0.005
#: Keys whose quoted form is longer than this are stored under a hash.
_MAX_NAME: Final = 150
_SUFFIX: Final = ".json"
_HASHED_PREFIX: Final = "="  # quote() always escapes "=", so no quoted key starts with it


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidConfiguration("a token-store key must be a non-empty string")


class MemoryTokenStore(PicklesWithoutLocks):
    """A store that lives and dies with the process (tests, short scripts)."""

    _LOCKS = ("_guard",)

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__getstate__().items() if k != "_locks"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**state, "_locks": {}})

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        _check_key(key)
        self._tokens[key] = token

    def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._tokens)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[KeyLock]:
        """Hold ``key``'s thread lock (it cannot be lost while we live)."""
        with self._guard:
            gate = self._locks.setdefault(key, threading.Lock())
        if not gate.acquire(timeout=timeout):
            raise LockTimeout(f"the refresh lock stayed busy for {timeout:g} s", key=key)
        try:
            yield KeyLock(self, key)
        finally:
            gate.release()

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._tokens)})"


def default_directory() -> Path:
    """``$REQUESTS_TOKENROTATE_HOME``, else the platformdirs user data directory."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("requests-tokenrotate", appauthor=False)) / "tokens"


def _nofollow_opener(path: str, flags: int) -> int:
    # The checks of every private file: no symlink, no FIFO (O_NONBLOCK), ours, one link.
    return open_private(path, flags)


class FileTokenStore:
    """One JSON file per key, replaced atomically; files 0600, directory 0700.

    :param directory: Where to keep the files; default :func:`default_directory`.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.directory)!r})"

    # -- paths -------------------------------------------------------------
    def _name(self, key: str) -> str:
        _check_key(key)
        name = quote(key, safe="")  # "/" becomes %2F: no key escapes the directory
        if len(name) > _MAX_NAME or name in {".", ".."}:
            name = _HASHED_PREFIX + hashlib.sha256(key.encode()).hexdigest()
        return name

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.directory / (self._name(key) + _SUFFIX)

    def lock_path(self, key: str) -> Path:
        """The lock file that gates refreshes of ``key`` (never deleted)."""
        return self.directory / (self._name(key) + ".lock")

    def _ensure_directory(self) -> None:
        try:
            private_directory(self.directory)
        except OSError as exc:
            raise TokenStoreError(
                f"cannot use the token directory {self.directory}: {exc.strerror}",
                path=str(self.directory),
            ) from None

    # -- reading -----------------------------------------------------------
    def _read(self, path: Path) -> _codec.Stored | None:
        try:
            raw = read_private(path, MAX_FILE_BYTES)
        except UnsafeFile as exc:
            raise self._unsafe(exc, path) from None
        except OSError as exc:
            raise TokenStoreError(
                f"cannot read token file {path}: {exc.strerror}", path=str(path)
            ) from None
        if raw is None:
            return None
        return _codec.decode(raw, path=str(path))

    @staticmethod
    def _unsafe(exc: UnsafeFile, path: Path | None = None) -> TokenStoreError:
        """The error for a token file (or its directory) that must not be used."""
        if path is None or exc.filename != str(path):
            return TokenStoreError(
                f"token directory {exc.filename}: {exc.strerror}; refusing to use it. "
                f"Use a directory of your own (or set ${HOME_ENV}).",
                path=str(exc.filename),
            )
        if exc.errno == errno.ELOOP:
            why = "is a symbolic link; refusing to follow it"
        else:
            why = f"cannot be used: {exc.strerror}"
        return TokenStoreError(
            f"token file {path} {why}. Remove it and log in again.", path=str(path)
        )

    def load(self, key: str) -> Token | None:
        """The token stored for ``key``, or None.

        :raises TokenStoreError: The file is corrupt, a symlink or someone else's.
        """
        stored = self._read(self.path(key))
        return None if stored is None else stored.token

    def keys(self) -> list[str]:
        """Every key with a token file, as it was given to :meth:`save`."""
        try:
            names = sorted(list_private(self.directory))
        except UnsafeFile as exc:
            raise self._unsafe(exc) from None
        except OSError as exc:
            raise TokenStoreError(
                f"cannot list the token directory {self.directory}: {exc.strerror}",
                path=str(self.directory),
            ) from None
        keys = []
        for name in names:
            if not name.endswith(_SUFFIX):
                continue
            stem = name[: -len(_SUFFIX)]
            if stem.startswith(_HASHED_PREFIX):
                with contextlib.suppress(TokenStoreError):
                    stored = self._read(self.directory / name)
                    if stored is not None and stored.key is not None:
                        keys.append(stored.key)
            elif not stem.startswith(TEMP_PREFIX):
                keys.append(unquote(stem))
        return keys

    # -- writing -----------------------------------------------------------
    def save(self, key: str, token: Token) -> None:
        """Write ``token`` for ``key`` atomically (temp file, fsync, replace).

        :raises TokenStoreError: The directory is not writable.
        """
        path = self.path(key)
        self._ensure_directory()
        try:
            write_atomically(path, _codec.encode(key, token))
        except OSError as exc:
            raise TokenStoreError(
                f"cannot write token file {path}: {exc.strerror}", path=str(path)
            ) from None
        remove_stale_temp_files(self.directory)

    def delete(self, key: str) -> None:
        """Remove ``key``'s token file (its lock file stays: see msal-extensions),
        and temp files an interrupted save left behind.

        :raises TokenStoreError: The file cannot be removed, or the directory
            belongs to another user.
        """
        path = self.path(key)
        try:
            remove_private(path)
        except UnsafeFile as exc:
            raise self._unsafe(exc, path) from None
        except OSError as exc:
            raise TokenStoreError(
                f"cannot remove token file {path}: {exc.strerror}", path=str(path)
            ) from None
        remove_stale_temp_files(self.directory)

    # -- the cross-process gate ---------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[KeyLock]:
        """Hold ``key``'s lock file exclusively (the kernel releases it if we die).

        :param timeout: Seconds to wait for a busy lock.
        :raises LockTimeout: The lock stayed busy past ``timeout``.
        """
        import portalocker  # only a refresh needs the lock

        path = self.lock_path(key)
        self._ensure_directory()
        lock = portalocker.Lock(
            str(path),
            mode="a",
            timeout=timeout,
            check_interval=LOCK_CHECK_INTERVAL,
            fail_when_locked=False,
            flags=portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING,
            opener=_nofollow_opener,  # never follow a planted symlink
        )
        started = time.monotonic()
        try:
            lock.acquire()
        except portalocker.LockException:
            raise LockTimeout(
                f"the refresh lock {path} stayed busy for {timeout:g} s; another process "
                "may be stuck refreshing. Try again.",
                key=key,
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TokenStoreError(
                    f"lock file {path} is a symbolic link; refusing to follow it", path=str(path)
                ) from None
            raise TokenStoreError(
                f"cannot open lock file {path}: {exc.strerror}", path=str(path)
            ) from None
        logger.debug(
            "lock %s acquired after %.1f ms", path.name, (time.monotonic() - started) * 1e3
        )
        try:
            yield KeyLock(self, key)
        finally:
            lock.release()
