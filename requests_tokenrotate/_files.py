"""Private files for the token store and the discovery cache: 0700 directories
and atomic 0600 writes (temp file in the same directory, fsync, ``os.replace``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

#: Prefix of temp files; ``quote()`` only writes "%" before two hex digits, so
#: no quoted store key starts with it.
TEMP_PREFIX: Final = "%tmp-"


def private_directory(directory: Path) -> None:
    """Create ``directory`` 0700, or tighten a looser one we own (with a WARNING).

    :raises OSError: It cannot be created, or belongs to another user.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if not hasattr(os, "getuid"):
        return
    if info.st_uid != os.getuid():
        raise PermissionError(errno.EPERM, "it belongs to another user", str(directory))
    if info.st_mode & 0o077:
        logger.warning("directory %s was readable by others; set it to 0700", directory)
        os.chmod(directory, 0o700)


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
