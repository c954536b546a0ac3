"""RFC 9110 §11.6.1 ``WWW-Authenticate`` parsing, enough for RFC 6750 §3 Bearer errors.

Real servers are sloppy: django-oauth-toolkit omits the space after commas,
proxies add a ``Basic`` challenge in front, values come unquoted. The parser
is lenient and never raises.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.request import parse_http_list  # requests imports it already

__all__ = ["bearer_error", "is_token", "parse_challenges"]

# RFC 9110 §5.6.2 tchar; a header name and an auth-scheme are tokens.
_TCHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_TOKEN68: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS: Final = " \t"
# An item: a token, then "=" and a value (a parameter), or a space and the
# rest (a new challenge with its token68 or first parameter), or nothing.
_ITEM: Final = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:[ \t]*(=)(.*)|[ \t]+(.*))?", re.S)


def _unquote(value: str) -> str:
    """A token as it is; a quoted string without its quotes (lenient: junk after
    the closing quote is dropped, an unterminated one runs to the end).

    ``parse_http_list`` has already removed the backslash escapes.
    """
    value = value.strip(_OWS)
    if not value.startswith('"'):
        return value
    end = value.rfind('"')
    return value[1:end] if end > 0 else value[1:]


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
    # parse_http_list splits at commas outside quoted strings (requests uses it
    # for parse_dict_header); each item starts a challenge or adds a parameter.
    for item in parse_http_list(value):
        match = _ITEM.fullmatch(item.strip(_OWS))
        if match is None:
            continue
        first, equals, param_value, rest = match.groups()
        if equals is not None:  # name=value: a parameter of the current challenge
            if params is not None:
                params.setdefault(first.lower(), _unquote(param_value))
            continue
        params = {}
        challenges.append((first.lower(), params))
        if rest:  # "Scheme token68" or "Scheme name=value"
            param = _ITEM.fullmatch(rest)
            if _TOKEN68.fullmatch(rest):
                params[""] = rest
            elif param is not None and param.group(2) is not None:
                params[param.group(1).lower()] = _unquote(param.group(3))
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
