"""RFC 9110 §11.6.1 ``WWW-Authenticate`` parsing, enough for RFC 6750 §3 Bearer errors.

Real servers are sloppy: django-oauth-toolkit omits the space after commas,
proxies add a ``Basic`` challenge in front, values come unquoted. The parser
is lenient and never raises.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["bearer_error", "is_token", "parse_challenges"]

# RFC 9110 §5.6.2 tchar; a header name and an auth-scheme are tokens.
_TCHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_TOKEN68: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS: Final = " \t"


def _skip_to_comma(value: str, i: int) -> int:
    """Index of the next comma outside a quoted string (or the end)."""
    quoted = False
    n = len(value)
    while i < n:
        c = value[i]
        if quoted and c == "\\":
            i += 1
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            return i
        i += 1
    return n


def _param_value(value: str, i: int) -> tuple[str, int]:
    """Read a token or quoted-string (unescaping ``\\x``); return it and the next index."""
    n = len(value)
    while i < n and value[i] in _OWS:
        i += 1
    if i < n and value[i] == '"':
        out = []
        i += 1
        while i < n:
            c = value[i]
            if c == "\\" and i + 1 < n:
                out.append(value[i + 1])
                i += 2
                continue
            i += 1
            if c == '"':
                break
            out.append(c)
        return "".join(out), i
    start = i
    while i < n and value[i] != "," and value[i] not in _OWS:
        i += 1  # lenient: servers send unquoted values that are not tokens (URLs)
    return value[start:i], i


def parse_challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """Split a ``WWW-Authenticate`` value into ``(scheme, params)`` pairs.

    Schemes and parameter names are lower-cased and quoted strings unescaped;
    a token68 credential is kept under the name ``""``. Several challenges
    may share one value (requests joins repeated headers with ``", "``), and
    commas may come with or without spaces. Malformed parts are skipped;
    this never raises.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    params: dict[str, str] | None = None
    i, n = 0, len(value)
    while i < n:
        if value[i] in _OWS or value[i] == ",":
            i += 1
            continue
        j = i
        while j < n and value[j] in _TCHARS:
            j += 1
        if j == i:  # not a token: junk up to the next comma
            i = _skip_to_comma(value, i + 1)
            continue
        name = value[i:j]
        k = j
        while k < n and value[k] in _OWS:
            k += 1
        if params is not None and k < n and value[k] == "=":
            param, i = _param_value(value, k + 1)
            params.setdefault(name.lower(), param)
            while i < n and value[i] in _OWS:
                i += 1
            if i < n and value[i] != ",":
                i = _skip_to_comma(value, i)
            continue
        params = {}
        challenges.append((name.lower(), params))
        i = k
        if k > j and (match := _TOKEN68.match(value, k)) is not None:
            end = match.end()
            while end < n and value[end] in _OWS:
                end += 1
            if end >= n or value[end] == ",":
                params[""] = match.group()
                i = end
    return challenges


def bearer_error(value: str | None) -> str | None:
    """The ``error`` of the first Bearer challenge that has one (lower-cased), else None."""
    if not value:
        return None
    for scheme, params in parse_challenges(value):
        error = params.get("error")
        if scheme == "bearer" and error:
            return error.strip().lower()
    return None


def is_token(value: object) -> bool:
    """True for a non-empty RFC 9110 token (a header name, an auth-scheme)."""
    return isinstance(value, str) and bool(value) and all(c in _TCHARS for c in value)
