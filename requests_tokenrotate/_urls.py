"""URLs without I/O: origins (where a token may go) and endpoint URL checks.

Origins: which (scheme, host, port) a URL goes to, compared on the parsed URL.

A token is attached only to configured origins. ``Session.mount`` matches
prefixes as plain strings (``https://api.example.com`` also matches
``https://api.example.com.evil``), so the check is always made here, on the
URL as requests prepares it (IDNA, lower case, default ports filled in).

Endpoints: the token endpoint and the login endpoints carry credentials, so
they must be https; plain http is accepted on a loopback host only (RFC 6749
§3.1, §3.2; RFC 8252 §7.3 for native apps).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from .exceptions import InvalidConfiguration

__all__ = [
    "Origin",
    "check_endpoint_url",
    "configured_url",
    "is_loopback",
    "origin_of",
    "parse_origins",
    "show_origin",
]

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
    # Configured origins are normalised once, by requests' own URL preparation,
    # so that they compare equal to the URLs requests sends; no request passes
    # through here, and the import waits until an origin is configured.
    from requests.exceptions import RequestException
    from requests.models import PreparedRequest

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


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    import ipaddress  # only endpoint checks need it, not `import requests_tokenrotate`

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: Any, what: str, *, allow_http: bool = True) -> str:
    """``url`` if it is https, or http on a loopback host; else :class:`ValueError`.

    :param allow_http: Whether plain http on a loopback host is acceptable.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"{what} is missing")
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{what} {url!r} is not an absolute URL")
    if parts.scheme == "https" or (
        allow_http and parts.scheme == "http" and is_loopback(parts.hostname)
    ):
        return url
    raise ValueError(f"{what} {url!r} is not https (plain http is allowed on loopback only)")


def configured_url(url: str, what: str) -> str:
    """:func:`check_endpoint_url` for a URL given to a constructor.

    :raises InvalidConfiguration: Not https, and not http on a loopback host.
    """
    try:
        return check_endpoint_url(url, what)
    except ValueError as exc:
        raise InvalidConfiguration(str(exc)) from None
