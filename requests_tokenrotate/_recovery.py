"""The requests mechanics of the adapter and the auth, around :class:`BearerPolicy`.

The policy decides on plain values; this module applies its decisions to
requests' objects: the header on a :class:`~requests.PreparedRequest`, the
token stripped from a redirect hop to a foreign origin, and the one resend
after a stale answer in the way :class:`~requests.auth.HTTPDigestAuth` does it
(drain and close the 401, rewind the body, carry the cookies over, resend,
keep the 401 in ``history``). With :mod:`._body`, it is the only code that
reads requests' private attributes (``_cookies``, ``_content``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin

from requests.cookies import extract_cookies_to_jar
from requests.exceptions import RequestException

from ._body import IN_MEMORY, is_replayable, rewind
from ._policy import warn_unreplayable
from ._token import fingerprint
from .exceptions import TokenRotateError

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    from requests import PreparedRequest, Response

    from ._policy import BearerPolicy
    from ._token import Token

__all__ = [
    "attach",
    "forget_on_redirect",
    "is_stale",
    "recover",
    "release",
    "strip",
]

logger = logging.getLogger(__name__)

#: A discarded 401/403 body is read up to this many bytes so that its connection
#: can be reused; a longer (or endless) one closes the connection instead.
DEFAULT_DRAIN_LIMIT: Final = 64 * 1024
_DRAIN_CHUNK: Final = 16 * 1024

Send = Callable[["PreparedRequest"], "Response"]


def release(response: Response, limit: int = DEFAULT_DRAIN_LIMIT) -> None:
    """Discard a response we will not return, keeping its connection only if that is cheap.

    A body of at most ``limit`` bytes is read (and kept in ``.content``) so
    that the connection goes back to the pool; a longer or endless one is not
    read further, and the connection is closed instead.
    """
    try:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            return  # close() below drops the connection without reading it
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_DRAIN_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                logger.debug("discarded a body over %d bytes: closing its connection", limit)
                return
        # All read: iter_content marked it consumed, so close() releases the connection.
        response._content = b"".join(chunks)
    except (RequestException, RuntimeError):  # a broken (or already read) body
        pass
    finally:
        response.close()


def attach(
    policy: BearerPolicy, request: PreparedRequest
) -> tuple[Token | None, bool, str | bytes | None]:
    """The full path before a send (:meth:`BearerPolicy.outgoing`); may block.

    :returns: The token put on ``request`` (None: nothing was, the request
        goes as it is), whether its body can be replayed, and the value our
        header held before.
    :raises TokenRotateError: From the source, as they are, with ``request`` set.
    """
    body = request.body
    replayable = body is None or isinstance(body, IN_MEMORY) or is_replayable(request)
    headers = request.headers
    store: dict[str, tuple[str, str | bytes]] | None = getattr(headers, "_store", None)
    if store is not None:
        item = store.get(policy.header_key)
        current = None if item is None else item[1]
    else:
        current = headers.get(policy.header)
    try:
        plan = policy.outgoing(request.url or "", current, replayable)
    except TokenRotateError as exc:
        if exc.request is None:
            exc.request = request
        raise
    if plan is None:
        return None, replayable, current
    if store is not None:  # CaseInsensitiveDict.__setitem__, without its call
        store[policy.header_key] = (policy.header, plan[1])
    else:
        headers[policy.header] = plan[1]
    return plan[0], replayable, current


def strip(policy: BearerPolicy, request: PreparedRequest, token: Token | None = None) -> None:
    """Remove our header if it holds ``token`` or a value the policy attached."""
    value = request.headers.get(policy.header)
    if value is None:
        return
    if policy.is_issued(value) or (token is not None and value == policy.header_value(token)):
        del request.headers[policy.header]
        logger.debug("%s: removed the token from a request to another origin", policy.source.key)


def is_stale(policy: BearerPolicy, response: Response, sent: Token) -> bool:
    """True if ``response`` says ``sent`` is stale (:meth:`BearerPolicy.is_stale_answer`)."""
    return policy.is_stale_answer(
        response.status_code, response.headers.get("WWW-Authenticate"), sent
    )


def forget_on_redirect(policy: BearerPolicy, response: Response, sent: Token) -> None:
    """Drop our header from a request redirected to a foreign origin.

    requests copies the redirected request, headers included, for the next
    hop and strips only ``Authorization`` across hosts; a custom header or a
    scheme/port change would otherwise carry the token along.
    """
    location = response.headers.get("location")
    request = response.request
    if location and request is not None:
        target = urljoin(response.url or request.url or "", location)
        if not policy.is_allowed(target):
            strip(policy, request, sent)


def recover(
    policy: BearerPolicy, response: Response, sent: Token, *, replayable: bool, send: Send
) -> Response:
    """Refresh after a stale-token ``response``; resend once if the body allows.

    ``response`` came from an allowed origin, answered a request that
    carried ``sent``, and :func:`is_stale` said so.

    :raises TokenRotateError: The refresh failed (the response is closed
        and attached to the error).
    """
    key = policy.source.key
    request = response.request
    if not replayable:
        warn_unreplayable(key, request.method, response.status_code)
        _refresh_after(policy, response, sent)
        return response
    release(response)
    new = _refresh_after(policy, response, sent)
    if not rewind(request):
        logger.warning("%s: could not rewind the body; returning the %s", key, response.status_code)
        return response
    value = policy.header_value(new)
    # The 401 keeps a record of what was sent; the request itself is updated in
    # place, because requests builds the next redirect hop from it.
    response.request = request.copy()
    jar: CookieJar | None = getattr(request, "_cookies", None)
    if jar is not None:
        extract_cookies_to_jar(jar, request, response.raw)
        request.prepare_cookies(jar)
    request.headers[policy.header] = value
    logger.debug(
        "%s: %s with token %s; retrying once with %s",
        key,
        response.status_code,
        fingerprint(sent.access_token),
        fingerprint(new.access_token),
    )
    retry = send(request)
    retry.history.append(response)
    if retry.is_redirect:
        forget_on_redirect(policy, retry, new)
    policy.record_retry(retry.status_code, retry.headers.get("WWW-Authenticate"), new)
    return retry


def _refresh_after(policy: BearerPolicy, response: Response, sent: Token) -> Token:
    try:
        return policy.source.refresh(sent)
    except TokenRotateError as exc:
        response.close()
        if exc.response is None:
            exc.response = response
            exc.request = response.request
        raise
