"""Origins: which (scheme, host, port) a URL goes to, compared on the parsed URL.

A token is attached only to configured origins. ``Session.mount`` matches
prefixes as plain strings (``https://api.example.com`` also matches
``https://api.example.com.evil``), so the check is always made here, on the
URL as requests prepares it (IDNA, lower case, default ports filled in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from requests.exceptions import RequestException
from requests.models import PreparedRequest

from .exceptions import InvalidConfiguration

__all__ = ["Origin", "origin_of", "parse_origins", "show_origin"]

#: (scheme, host, port), with the default port filled in.
Origin = tuple[str, str, int]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin | None:
    """The (scheme, host, port) of an http(s) URL as requests connects to it, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    default = _DEFAULT_PORTS.get(scheme)
    if default is None or not host:
        return None
    return (scheme, host, default if port is None else port)


def show_origin(origin: Origin) -> str:
    """``https://host:port`` for messages and logs (never a path or query)."""
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def parse_origins(origins: str | Iterable[str]) -> frozenset[Origin]:
    """Normalise configured origins the way requests prepares URLs (IDNA, case, ports).

    :raises InvalidConfiguration: An entry is not an absolute http(s) URL.
    """
    if isinstance(origins, str):
        origins = (origins,)
    elif not isinstance(origins, Iterable):
        raise InvalidConfiguration(f"origins must be a URL or URLs, not {origins!r}")
    parsed = set()
    for url in origins:
        prepared = PreparedRequest()
        try:
            prepared.prepare_url(url, None)
        except (RequestException, ValueError, TypeError, UnicodeError):
            origin = None
        else:
            origin = origin_of(prepared.url or "")
        if origin is None:
            raise InvalidConfiguration(
                f"origins must be absolute http(s) URLs such as 'https://api.example.com', "
                f"not {url!r}"
            )
        parsed.add(origin)
    if not parsed:
        raise InvalidConfiguration("origins must name at least one http(s) origin")
    return frozenset(parsed)
