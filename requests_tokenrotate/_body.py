"""Request-body replay: can a body be sent again, and rewinding it.

This is the only module that reads ``PreparedRequest._body_position``: the
position requests records (``tell()``) when it prepares a file-like body, and
that :func:`requests.utils.rewind_body` seeks back to on a redirect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from requests.exceptions import UnrewindableBodyError
from requests.utils import rewind_body

if TYPE_CHECKING:
    from requests import PreparedRequest

__all__ = ["IN_MEMORY", "is_replayable", "rewind"]

#: Body types that are sent from memory and can be sent again as they are.
#: requests streams a ``bytearray`` or ``memoryview`` (they are iterables), but
#: they are still in memory.
IN_MEMORY: Final = (bytes, str, bytearray, memoryview)


def is_replayable(request: PreparedRequest) -> bool:
    """True if ``request``'s body can be sent again, byte for byte.

    Replayable: no body, ``bytes``/``str`` (and ``bytearray``/``memoryview``),
    or a seekable file whose start position requests recorded. Not replayable:
    generators and other iterators, pipes and sockets (``tell()`` failed),
    file-likes that say ``seekable()`` is false, and streams without
    ``tell()`` such as requests-toolbelt's ``MultipartEncoder``.
    """
    body = request.body
    if body is None or isinstance(body, IN_MEMORY):
        return True
    # None: the body has no tell(); object(): tell() raised (requests' sentinel).
    position = request._body_position
    if not isinstance(position, int) or isinstance(position, bool):
        return False
    if not callable(getattr(body, "seek", None)):
        return False
    seekable = getattr(body, "seekable", None)
    if seekable is None:
        return True  # a file-like with tell() and seek() but no seekable()
    try:
        return bool(seekable())
    except (OSError, ValueError):  # ValueError: the file was closed
        return False


def rewind(request: PreparedRequest) -> bool:
    """Seek a file body back to where requests recorded; False if that failed.

    In-memory bodies and no body need nothing and return True.
    """
    body = request.body
    if body is None or isinstance(body, IN_MEMORY):
        return True
    try:
        rewind_body(request)
    except (UnrewindableBodyError, ValueError):  # ValueError: the file was closed
        return False
    return True
