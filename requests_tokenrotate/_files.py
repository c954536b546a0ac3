"""Private files for the token store and the discovery cache.

The one place that opens them, so every private file gets the same checks:

- a directory is 0700 and ours; another user's directory is refused for
  reading as for writing, and the file is opened relative to the directory
  descriptor that was checked;
- a file is opened with ``O_NOFOLLOW`` (a planted symlink is refused),
  ``O_NONBLOCK`` (a FIFO at the path cannot block the open) and
  ``O_CLOEXEC``; then the descriptor, not the path, is checked: a regular
  file, ours, one link, at most ``max_bytes``; a loose mode is repaired with
  ``fchmod`` (through the path, a hard link would repair someone else's file);
- writes are atomic: a 0600 temp file in the same directory, fsync,
  ``os.replace``; temp files a killed writer left behind (they hold secrets)
  are removed later, only ours and only old ones.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

#: Prefix of temp files; ``quote()`` only writes "%" before two hex digits, so
#: no quoted store key starts with it.
TEMP_PREFIX: Final = "%tmp-"
#: Seconds after which a temp file of ours is taken for one a killed writer
#: left behind. A live writer holds its temp file for milliseconds.
STALE_TEMP_AGE: Final = 300.0
#: Largest private file read (a token or a discovery document is far smaller).
MAX_FILE_BYTES: Final = 4 * 1024 * 1024

_POSIX: Final = hasattr(os, "getuid")
_OPEN_FLAGS: Final = (
    getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
)
# Open the file relative to the directory descriptor that was checked, so the
# directory cannot be swapped between the check and the open.
_DIR_FD: Final = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


class UnsafeFile(OSError):
    """A path that must not be used: ``strerror`` says why (``"it is a FIFO"``)
    and ``filename`` names it (the file, or its directory).
    """


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check_owner(info: os.stat_result, path: str) -> None:
    if _POSIX and info.st_uid != os.getuid():
        raise UnsafeFile(errno.EPERM, "it belongs to another user", path)


def private_directory(directory: Path) -> None:
    """Create ``directory`` 0700, or tighten a looser one we own (with a WARNING).

    :raises UnsafeFile: It belongs to another user.
    :raises OSError: It cannot be created.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    _check_owner(info, str(directory))
    if _POSIX and info.st_mode & 0o077:
        logger.warning("directory %s was readable by others; set it to 0700", directory)
        os.chmod(directory, 0o700)


def _open_directory(directory: str) -> int | None:
    """A descriptor of ``directory`` once it is known to be ours (None: no dir_fd here)."""
    if not _DIR_FD:
        _check_owner(os.stat(directory), directory)
        return None
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_owner(os.fstat(fd), directory)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_in(name: str, flags: int, dir_fd: int | None, path: str) -> int:
    try:
        return os.open(name, flags | _OPEN_FLAGS, 0o600, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # ELOOP (a symlink under O_NOFOLLOW), ENXIO (a socket, or a FIFO opened
        # for writing with no reader), EISDIR: say what is in the way.
        try:
            info = os.lstat(name, dir_fd=dir_fd)
        except OSError:
            raise exc from None
        if stat.S_ISREG(info.st_mode):
            raise
        raise UnsafeFile(exc.errno, f"it is {_kind(info.st_mode)}", path) from None


def _check_descriptor(fd: int, path: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(errno.EINVAL, f"it is {_kind(info.st_mode)}", path)
    if not _POSIX:
        return
    _check_owner(info, path)
    if info.st_nlink != 1:
        # A hard link would let a repair (or a read) reach another file.
        raise UnsafeFile(errno.EMLINK, f"it has {info.st_nlink} hard links", path)
    if info.st_mode & 0o077:
        logger.warning("file %s was readable by others; set it to 0600", path)
        os.fchmod(fd, 0o600)


def open_private(path: str | os.PathLike[str], flags: int = os.O_RDONLY) -> int:
    """Open ``path`` as a private file and return its descriptor.

    Usable as an ``opener=`` of :func:`open` (the lock file). Never blocks on a
    FIFO, never follows a symlink; a new file is created 0600.

    :param flags: ``os.open`` flags; ``O_NOFOLLOW``, ``O_NONBLOCK`` and
        ``O_CLOEXEC`` are added.
    :raises FileNotFoundError: It, or its directory, does not exist.
    :raises UnsafeFile: It is not a regular file, not ours or has more than
        one link, or its directory belongs to another user.
    :raises OSError: It cannot be opened.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    dir_fd = _open_directory(directory or ".")
    try:
        fd = _open_in(name if dir_fd is not None else path, flags, dir_fd, path)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    try:
        _check_descriptor(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes | None:
    """The bytes of the private file ``path``, or None if it (or its directory) is absent.

    :raises UnsafeFile: See :func:`open_private`, or it is larger than ``max_bytes``.
    :raises OSError: It cannot be read.
    """
    try:
        fd = open_private(path)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        # Ask for the size fstat saw (asking for max_bytes would allocate it),
        # then for the rest, bounded, should the file have grown since.
        size = min(os.fstat(fd).st_size, max_bytes)
        raw = handle.read(size + 1)
        if len(raw) > size:
            raw += handle.read(max_bytes - size)
    if len(raw) > max_bytes:
        raise UnsafeFile(errno.EFBIG, f"it is larger than {max_bytes} bytes", str(path))
    return raw


def list_private(directory: Path) -> list[str]:
    """The names in ``directory`` (empty if it is absent), once it is known to be ours.

    :raises UnsafeFile: It belongs to another user.
    """
    try:
        dir_fd = _open_directory(str(directory))
    except FileNotFoundError:
        return []
    if dir_fd is None:
        return os.listdir(directory)
    try:
        return os.listdir(dir_fd)
    finally:
        os.close(dir_fd)


def remove_private(path: Path) -> None:
    """Remove ``path`` if it exists, once its directory is known to be ours.

    :raises UnsafeFile: The directory belongs to another user.
    :raises OSError: It cannot be removed.
    """
    try:
        dir_fd = _open_directory(str(path.parent))
    except FileNotFoundError:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name if dir_fd is not None else path, dir_fd=dir_fd)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def remove_stale_temp_files(directory: Path, *, older_than: float = STALE_TEMP_AGE) -> int:
    """Remove the temp files a killed writer left in ``directory``; best effort.

    Only ours: our prefix, our uid, a regular file, unmodified for
    ``older_than`` seconds (a concurrent writer's fresh temp file stays).

    :returns: How many were removed.
    """
    try:
        names = [name for name in os.listdir(directory) if name.startswith(TEMP_PREFIX)]
    except OSError:
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for name in names:
        path = directory / name
        try:
            info = os.lstat(path)
            if (
                stat.S_ISREG(info.st_mode)
                and (not _POSIX or info.st_uid == os.getuid())
                and info.st_mtime < cutoff
            ):
                os.unlink(path)
                removed += 1
        except OSError as exc:
            logger.debug("could not remove stale temp file %s: %s", path, exc.strerror)
    if removed:
        logger.warning(
            "removed %d temp file(s) left in %s by an interrupted write", removed, directory
        )
    return removed


def write_atomically(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` all at once; readers see the old or the new file.

    :raises OSError: Nothing was replaced, and no temp file is left behind.
    """
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp creates it 0600
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
