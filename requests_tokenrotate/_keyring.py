"""KeyringTokenStore: tokens in the OS keychain, refreshed single-flight.

The keychain has no lock and no compare-and-set, so every read-modify-write
happens under a lock file (the same never-deleted, no-follow lock as
:class:`~requests_tokenrotate.FileTokenStore`) in a per-user directory keyed by
(service, key). Every keychain call runs under a deadline: a locked collection
whose unlock prompt never answers, or a D-Bus that does not reply, is a
:class:`~requests_tokenrotate.TokenStoreError` after ``call_timeout`` seconds.

Size: Windows Credential Manager refuses secrets over 2,560 bytes (1,280
UTF-16 characters), and an access token, a refresh token and an ID token
together exceed that. A stored document is split into parts of
:data:`PART_CHARS` characters, named by generation, behind a manifest written
last; a reader that meets a half-replaced set re-reads the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

from . import _codec
from ._stores import HOME_ENV, FileTokenStore
from .exceptions import InvalidConfiguration, TokenStoreError

if TYPE_CHECKING:
    from ._token import Token

logger = logging.getLogger(__name__)

DEFAULT_SERVICE: Final = "requests-tokenrotate"
#: Seconds one keychain call may take before it is abandoned.
DEFAULT_CALL_TIMEOUT: Final = 5.0
#: Characters per keychain entry: under Windows' 1,280 UTF-16 characters.
PART_CHARS: Final = 1000
#: Keychain backends that store nothing or store it in plain text; refused
#: unless passed explicitly as ``backend=``.
_UNSAFE_MODULES: Final = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")
_INDEX: Final = "index"
_MANIFEST_VERSION: Final = 1

T = TypeVar("T")


def _lock_directory(service: str) -> Path:
    override = os.environ.get(HOME_ENV)
    if override:
        base = Path(override).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_data_dir("requests-tokenrotate", appauthor=False))
    return base / "keyring-locks" / quote(service, safe="")


class _Manifest:
    __slots__ = ("digest", "generation", "parts")

    def __init__(self, generation: int, parts: int, digest: str) -> None:
        self.generation = generation
        self.parts = parts
        self.digest = digest


class KeyringTokenStore:
    """Tokens in the OS keychain (Secret Service, macOS Keychain, Windows).

    :param service: The keychain service name the entries are filed under.
    :param backend: A ``keyring`` backend instance; default: the one
        ``keyring`` selects. A default that stores nothing or stores plain
        text (``fail``, ``null``, ``keyrings.alt``) is refused.
    :param call_timeout: Seconds each keychain call may take (default 5).
    :param lock_directory: Where the lock files live; default
        ``keyring-locks/<service>`` in ``$REQUESTS_TOKENROTATE_HOME`` or the
        platformdirs user data directory (never the working directory).
    :raises InvalidConfiguration: An empty service or a bad timeout.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        service: str = DEFAULT_SERVICE,
        *,
        backend: Any = None,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        lock_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(service, str) or not service:
            raise InvalidConfiguration("service must be a non-empty string")
        if isinstance(call_timeout, bool) or not isinstance(call_timeout, int | float):
            raise InvalidConfiguration("call_timeout must be seconds > 0")
        if call_timeout <= 0:
            raise InvalidConfiguration("call_timeout must be seconds > 0")
        self.service = service
        self.call_timeout = float(call_timeout)
        self._explicit = backend is not None
        self._backend = backend
        directory = _lock_directory(service) if lock_directory is None else Path(lock_directory)
        # Key locks and the index lock in separate directories: any string is a key.
        self._locks = FileTokenStore(directory / "keys")
        self._index_lock = FileTokenStore(directory)

    def __repr__(self) -> str:
        return f"KeyringTokenStore(service={self.service!r})"

    # -- the keychain, bounded -----------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one keychain call in a daemon thread; give up after ``call_timeout``."""
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:  # reported below, typed
                box.append((False, exc))

        worker = threading.Thread(target=run, name="tokenrotate-keyring", daemon=True)
        worker.start()
        worker.join(self.call_timeout)
        if not box:
            raise TokenStoreError(
                f"the keychain did not answer {what} within {self.call_timeout:g} s (a locked "
                "collection waiting for an unlock prompt, or no D-Bus session?)",
                path=self.service,
            )
        ok, value = box[0]
        if not ok:
            # keyring's and D-Bus' messages are not ours to vouch for: name the type only.
            raise TokenStoreError(
                f"the keychain failed {what} ({type(value).__name__})", path=self.service
            ) from None
        return value  # type: ignore[no-any-return]

    @property
    def backend(self) -> Any:
        """The keyring backend in use (resolved on first need, checked for safety).

        :raises TokenStoreError: No usable keychain: ``keyring`` fell back to
            a backend that stores nothing or plain text.
        """
        if self._backend is None:

            def resolve() -> Any:
                import keyring

                return keyring.get_keyring()

            chosen = self._call("while choosing a backend", resolve)
            if _is_unsafe(chosen):
                raise TokenStoreError(
                    f"no usable OS keychain: keyring chose {describe_backend(chosen)}. On Linux, "
                    "a Secret Service (gnome-keyring, KWallet) on a D-Bus session is needed; "
                    "pass backend= to choose one explicitly",
                    path=self.service,
                )
            self._backend = chosen
        return self._backend

    def describe(self) -> str:
        """``keyring:<service> (<backend>)`` for ``tokenrotate status``."""
        return f"keyring:{self.service} ({describe_backend(self.backend)})"

    def _get(self, name: str) -> str | None:
        backend = self.backend
        value = self._call("a read", lambda: backend.get_password(self.service, name))
        return value if isinstance(value, str) else None

    def _set(self, name: str, value: str) -> None:
        backend = self.backend
        self._call("a write", lambda: backend.set_password(self.service, name, value))

    def _remove(self, name: str) -> None:
        backend = self.backend

        def run() -> None:
            import keyring.errors

            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                backend.delete_password(self.service, name)

        self._call("a delete", run)

    # -- documents split into parts ------------------------------------------
    def _manifest(self, key: str) -> _Manifest | None:
        raw = self._get("key:" + key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            manifest = _Manifest(int(data["generation"]), int(data["parts"]), str(data["sha256"]))
        except (ValueError, TypeError, KeyError):
            raise self._corrupt(key, "an unreadable manifest") from None
        if data.get("version") != _MANIFEST_VERSION or not 0 < manifest.parts <= 1000:
            raise self._corrupt(key, "an unknown manifest")
        return manifest

    def _corrupt(self, key: str, why: str) -> TokenStoreError:
        return TokenStoreError(
            f"keychain entry {key!r} of service {self.service!r} has {why}; log in again "
            "to replace it",
            path=self.service,
        )

    def _read(self, key: str) -> tuple[_Manifest, _codec.Stored] | None:
        for _ in range(2):  # a writer may have replaced the parts between our reads
            manifest = self._manifest(key)
            if manifest is None:
                return None
            parts = [self._get(_part(key, manifest.generation, i)) for i in range(manifest.parts)]
            text = "".join(part for part in parts if part is not None)
            if None not in parts and _digest(text) == manifest.digest:
                where = f"{self.service}/{key}"
                return manifest, _codec.decode(text, path=where, what="keychain entry")
        raise self._corrupt(key, "parts that do not match its manifest")

    def _write(self, key: str, token: Token, previous: _Manifest | None) -> _Manifest:
        generation = 1 if previous is None else previous.generation + 1
        text = _codec.encode(key, token, generation).decode()
        chunks = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)]
        for i, chunk in enumerate(chunks):
            self._set(_part(key, generation, i), chunk)
        manifest = _Manifest(generation, len(chunks), _digest(text))
        document = {
            "version": _MANIFEST_VERSION,
            "generation": generation,
            "parts": manifest.parts,
            "sha256": manifest.digest,
        }
        self._set("key:" + key, json.dumps(document))  # last: readers switch over here
        # A backend that stores nothing (null, fail) must not pass for a keychain.
        back = self._read(key)
        if back is None or back[0].generation != generation or not back[1].token.is_same(token):
            raise TokenStoreError(
                f"the keychain ({describe_backend(self.backend)}) did not keep what was "
                "written; it stores nothing",
                path=self.service,
            )
        if previous is not None:
            self._drop_parts(key, previous)
        else:
            self._index_add(key)
        return manifest

    def _drop_parts(self, key: str, manifest: _Manifest) -> None:
        for i in range(manifest.parts):
            self._remove(_part(key, manifest.generation, i))

    # -- the index: the keychain cannot list entries portably -------------------
    def _index(self) -> list[str]:
        raw = self._get(_INDEX)
        if raw is None:
            return []
        try:
            keys = json.loads(raw)
        except ValueError:
            raise TokenStoreError(
                f"the key index of keychain service {self.service!r} is corrupt",
                path=self.service,
            ) from None
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    def _index_update(self, change: Callable[[set[str]], None]) -> None:
        with self._index_lock.lock(_INDEX, self.call_timeout * 4):
            keys = set(self._index())
            before = set(keys)
            change(keys)
            if keys != before:
                self._set(_INDEX, json.dumps(sorted(keys)))

    def _index_add(self, key: str) -> None:
        self._index_update(lambda keys: keys.add(key))

    # -- TokenStore --------------------------------------------------------
    def load(self, key: str) -> Token | None:
        """The token stored for ``key``, or None.

        :raises TokenStoreError: No usable keychain, a call timed out, or the
            entry is corrupt.
        """
        found = self._read(_checked(key))
        return None if found is None else found[1].token

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` for ``key`` (under the key's lock, read back to verify).

        :raises TokenStoreError: The keychain failed, timed out or kept nothing.
        """
        with self.lock(_checked(key), self.call_timeout * 4) as held:
            with contextlib.suppress(TokenStoreError):
                held.load()
            held.save(token)

    def delete(self, key: str) -> None:
        """Remove ``key``'s entries and its index line."""
        with self.lock(_checked(key), self.call_timeout * 4) as held:
            held.delete()

    def keys(self) -> list[str]:
        """The keys in this service's index (the keychain itself cannot list them)."""
        return sorted(self._index())

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[_HeldKeyring]:
        """Hold ``key``'s lock file; the keychain is only written under it."""
        with self._locks.lock(_checked(key), timeout):
            yield _HeldKeyring(self, key)


class _HeldKeyring:
    """The held lock of a keychain key: the lock file cannot be lost while we live."""

    __slots__ = ("_manifest", "_read", "key", "store")

    def __init__(self, store: KeyringTokenStore, key: str) -> None:
        self.store = store
        self.key = key
        self._read = False
        self._manifest: _Manifest | None = None

    def remaining(self) -> float:
        return float("inf")

    def load(self) -> Token | None:
        found = self.store._read(self.key)
        self._read = True
        self._manifest = None if found is None else found[0]
        return None if found is None else found[1].token

    def _current(self) -> _Manifest | None:
        if self._read:
            return self._manifest
        try:  # a corrupt manifest is what a save replaces
            return self.store._manifest(self.key)
        except TokenStoreError:
            return None

    def save(self, token: Token) -> None:
        # Only lock holders write, and the lock file cannot be lost while we
        # live: what load() read is still what the keychain holds.
        self._manifest = self.store._write(self.key, token, self._current())
        self._read = True

    def delete(self) -> None:
        manifest = self._current()
        self.store._remove("key:" + self.key)
        if manifest is not None:
            self.store._drop_parts(self.key, manifest)
        self.store._index_update(lambda keys: keys.discard(self.key))
        self._manifest = None
        self._read = True


def _checked(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidConfiguration("a token-store key must be a non-empty string")
    return key


def _part(key: str, generation: int, index: int) -> str:
    return f"part:{generation}:{index}:{key}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _is_unsafe(backend: Any) -> bool:
    module = type(backend).__module__
    if module.startswith(_UNSAFE_MODULES):
        return True
    inner = getattr(backend, "backends", None)  # the chainer: safe if any member is
    return inner is not None and all(_is_unsafe(b) for b in inner)


def describe_backend(backend: Any) -> str:
    """``module.Class`` of a keyring backend, for messages and ``status``."""
    kind = type(backend)
    return f"{kind.__module__}.{kind.__qualname__}"
