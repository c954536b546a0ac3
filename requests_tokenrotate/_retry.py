"""When a failed token-endpoint call may be repeated: a decision without I/O.

The rule turns on one question: could the server have acted on the request?
A refresh token is single-use on rotating servers, so a refresh-token grant is
repeated only when the server certainly did not act on it: the connection
failed before the request was sent, or the server said so (503 or 429 with
``Retry-After``, RFC 9110 §10.2.3). A 500/502/504, a reset or a read timeout
after sending may follow a rotation the client never saw: repeating it would
spend the old token again (``invalid_grant``, and on revoke-family servers the
death of the new one). Grants that spend nothing (client credentials, JWT
bearer, token exchange) may repeat those too.
"""

from __future__ import annotations

import email.utils
import math
from typing import Final

from ._exchange import LOST, NOT_SENT

#: Attempts of one token-endpoint call, the first included.
DEFAULT_MAX_ATTEMPTS: Final = 3
#: The pause before the second attempt (seconds); it doubles, with jitter.
RETRY_BACKOFF: Final = 0.1
#: Statuses that say "not now" and, with ``Retry-After``, "not done".
_DEFERRED: Final = frozenset({429, 503})
#: Statuses worth another try when repeating is harmless.
_TRANSIENT: Final = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date).

    :param now: The current epoch time, for an HTTP-date.
    :returns: Seconds (0 for a date in the past), or None when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdecimal() and value.isascii():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 §5.6.7: an HTTP-date is in GMT
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_delay(
    *,
    rotating: bool,
    failure: str | None,
    status: int,
    retry_after: float | None,
    attempt: int,
    remaining: float,
    jitter: float,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> float | None:
    """Seconds to wait before repeating a failed token-endpoint call, or None.

    :param rotating: The request spends a refresh token.
    :param failure: The exchange's failure kind (``NOT_SENT``, ``LOST``, ...),
        None when an answer arrived.
    :param status: The answer's status (0 without an answer).
    :param retry_after: The answer's ``Retry-After`` in seconds, if any.
    :param attempt: How many attempts were made (1 after the first).
    :param remaining: Seconds left before the call's deadline.
    :param jitter: A random number in [0, 1), spreading the pauses of peers.
    :param max_attempts: The most attempts of one call.
    :returns: None when the call must not (or need not) be repeated, or when
        the pause would not fit in ``remaining``.
    """
    if attempt >= max_attempts:
        return None
    backoff = RETRY_BACKOFF * 2 ** (attempt - 1) * (0.5 + jitter)
    if failure == NOT_SENT:
        delay = backoff
    elif failure is None and status in _DEFERRED and retry_after is not None:
        delay = retry_after + jitter * RETRY_BACKOFF
    elif rotating:
        return None
    elif failure == LOST or (failure is None and status in _TRANSIENT):
        delay = max(backoff, retry_after or 0.0)
    else:
        return None
    return delay if delay < remaining else None
