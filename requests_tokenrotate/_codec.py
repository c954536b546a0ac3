"""The versioned JSON form of a stored token, shared by every store.

One document per key::

    {"version": 1, "key": "<key>", "generation": 7, "token": {...}}

``generation`` counts the saves of a key; shared stores compare-and-set on it
(see :class:`~requests_tokenrotate.TokenStore`). A file written before it
existed reads as generation 0. A document from a newer format is refused, never
overwritten.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ._token import Token
from .exceptions import TokenStoreError

#: Version of the stored format; newer documents are refused, not overwritten.
FORMAT_VERSION: Final = 1
#: What to do about a corrupt document.
DEFAULT_HINT: Final = "log in again (or log out) to replace it"


class Stored:
    """One decoded document: the key it names, its token and its generation."""

    __slots__ = ("generation", "key", "token")

    def __init__(self, key: str | None, token: Token, generation: int) -> None:
        self.key = key
        self.token = token
        self.generation = generation


def encode(key: str, token: Token, generation: int = 0) -> bytes:
    """The stored form of ``token`` under ``key``."""
    document = {
        "version": FORMAT_VERSION,
        "key": key,
        "generation": generation,
        "token": token.to_dict(),
    }
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def decode(
    raw: bytes | str, *, path: str, what: str = "token file", hint: str = DEFAULT_HINT
) -> Stored:
    """Read a stored document.

    :param path: Names the document in errors and in ``.path`` (a file path,
        a Redis key, a table row).
    :param what: What ``path`` is, for messages (``"token file"``).
    :param hint: What the user should do about a corrupt document.
    :raises TokenStoreError: Empty, not JSON, not a token document, or from a
        newer format.
    """
    where = f"{what} {path}"

    def corrupt(why: str) -> TokenStoreError:
        return TokenStoreError(f"{where} is {why}; {hint}", path=path)

    if not raw.strip():
        raise corrupt("empty")
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # the error's .doc would carry the secrets
        raise corrupt("not valid JSON (truncated or corrupt)") from None
    if not isinstance(data, dict) or not isinstance(data.get("token"), dict):
        raise corrupt("not a token document")
    version = data.get("version")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > 1:
            raise TokenStoreError(
                f"{where} has format version {version}, written by a newer "
                "requests-tokenrotate; upgrade it",
                path=path,
            )
        raise corrupt("not a token document (unknown format version)")
    generation = data.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise corrupt("not a token document (bad generation)")
    key = data.get("key")
    try:
        token = Token.from_dict(data["token"])
    except (ValueError, TypeError) as exc:
        raise corrupt(f"corrupt ({exc})") from None
    return Stored(key if isinstance(key, str) else None, token, generation)
