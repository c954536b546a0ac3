"""Lazy, cached OIDC / RFC 8414 discovery of an issuer's token endpoint.

The document is fetched on the first token-endpoint call, once for all threads
of a client, and cached on disk (one 0600 JSON file per issuer in a 0700
directory) so that the next process makes no discovery request. A failure is
never cached: the next call tries again.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from ._answers import parse_json
from ._exchange import DEADLINE, DEFAULT_DEADLINE, TOO_LARGE, exchange
from ._files import (
    MAX_FILE_BYTES,
    private_directory,
    read_private,
    remove_stale_temp_files,
    write_atomically,
)
from ._gate import PicklesWithoutLocks
from ._stores import HOME_ENV
from .exceptions import DiscoveryError, InvalidConfiguration

logger = logging.getLogger(__name__)

#: Seconds a discovery document is reused from the disk cache (one day).
DEFAULT_DISCOVERY_TTL: Final = 86400.0
_OIDC: Final = "/.well-known/openid-configuration"
_RFC8414: Final = "/.well-known/oauth-authorization-server"
_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_REUSE: Final = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\b", re.IGNORECASE)
_FILE_VERSION: Final = 1


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
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


def default_cache_dir() -> Path:
    """Where discovery documents are cached unless a directory is given.

    ``$REQUESTS_TOKENROTATE_HOME/cache/discovery`` when that variable is set
    (so one variable isolates tokens and caches, e.g. in tests or CI), else
    ``discovery`` in the platformdirs user cache directory.
    """
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser() / "cache" / "discovery"
    import platformdirs

    return Path(platformdirs.user_cache_dir("requests-tokenrotate", appauthor=False)) / "discovery"


class Discovery(PicklesWithoutLocks):
    """The discovery document of one issuer, fetched on first need.

    The document is looked for at ``{issuer}/.well-known/openid-configuration``
    (OIDC Discovery §4), then at the RFC 8414 §3.1 location
    ``{origin}/.well-known/oauth-authorization-server{path}``.

    :param issuer: The issuer URL (https, or http on loopback), compared with
        the document's ``issuer`` (OIDC Discovery §4.3).
    :param ttl: Seconds the document is reused from the disk cache (default
        one day). A shorter ``Cache-Control: max-age`` from the server wins;
        ``no-store``, ``no-cache`` or ``max-age=0``, like ``ttl=0``, keep the
        document off the disk: it is then fetched once per process.
    :param cache_dir: Where to cache (default :func:`default_cache_dir`).
    :param timeout: Seconds, or a ``(connect, read)`` pair, for each socket
        operation, clamped to the time left before the deadline.
    :param deadline: Wall-clock seconds for fetching the document (both
        locations, connect to last byte; default 30). A larger answer than
        1 MiB, or one still unfinished at the deadline, is a
        :class:`DiscoveryError`.
    :param clock: Epoch-seconds clock (tests inject one).
    :raises InvalidConfiguration: ``issuer`` is not an https (or loopback)
        URL without query or fragment.
    """

    _LOCKS = ("_lock",)

    def __init__(
        self,
        issuer: str,
        *,
        ttl: float | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            check_endpoint_url(issuer, "issuer")
        except ValueError as exc:
            raise InvalidConfiguration(str(exc)) from None
        parts = urlsplit(issuer)
        if parts.query or parts.fragment:
            raise InvalidConfiguration(f"issuer {issuer!r} must not have a query or fragment")
        if ttl is not None and (isinstance(ttl, bool) or ttl < 0):
            raise InvalidConfiguration("discovery_ttl must be None or seconds >= 0")
        self.issuer = issuer.rstrip("/")
        self.ttl = DEFAULT_DISCOVERY_TTL if ttl is None else float(ttl)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.timeout = timeout
        self.deadline = float(deadline)
        self.clock = clock
        self._lock = threading.Lock()
        # (document, expires_at); expires_at None: kept for the life of the process.
        self._cached: tuple[dict[str, Any], float | None] | None = None
        self._attempts = 0
        self._failure: str | None = None

    def __repr__(self) -> str:
        return f"Discovery({self.issuer!r})"

    @property
    def cache_path(self) -> Path:
        """The disk cache file for this issuer."""
        directory = self._cache_dir if self._cache_dir is not None else default_cache_dir()
        return directory / (hashlib.sha256(self.issuer.encode()).hexdigest()[:32] + ".json")

    @property
    def urls(self) -> list[str]:
        """Where the document is looked for, in order."""
        parts = urlsplit(self.issuer)
        origin = f"{parts.scheme}://{parts.netloc}"
        # OIDC Discovery §4 appends; RFC 8414 §3.1 inserts before the path.
        return [self.issuer + _OIDC, origin + _RFC8414 + parts.path]

    def _fresh(self) -> dict[str, Any] | None:
        cached = self._cached
        if cached is not None and (cached[1] is None or self.clock() < cached[1]):
            return cached[0]
        return None

    def document(self, session: requests.Session, *, until: float | None = None) -> dict[str, Any]:
        """The validated discovery document (memory, then disk, then network).

        :param until: A :func:`time.monotonic` instant the fetch must end by
            (default: ``deadline`` seconds from the start of the fetch).

        :raises DiscoveryError: It could not be fetched or is unusable. Nothing
            is cached then: the next call tries again.
        """
        document = self._fresh()
        if document is not None:
            return document
        attempts = self._attempts
        with self._lock:  # one discovery for many threads
            document = self._fresh()
            if document is not None:
                return document
            if self._attempts != attempts and self._failure is not None:
                # The fetch we waited for just failed: share its error instead of
                # queueing one more timeout per waiting thread. The next call retries.
                raise DiscoveryError(self._failure)
            loaded = self._load_cache()
            if loaded is None:
                self._failure = None
                try:
                    if until is None:
                        until = time.monotonic() + self.deadline
                    loaded = self._fetch(session, until)
                except DiscoveryError as exc:
                    self._failure = exc.message
                    raise
                finally:
                    # Counted when the fetch is over, so threads that waited for
                    # it (and only those) see that it failed.
                    self._attempts += 1
            self._cached = loaded
            return loaded[0]

    def token_endpoint(self, session: requests.Session, *, until: float | None = None) -> str:
        """The ``token_endpoint`` of the issuer.

        :raises DiscoveryError: See :meth:`document`.
        """
        return str(self.document(session, until=until)["token_endpoint"])

    def forget(self) -> None:
        """Drop the cached document (memory and disk): the next call discovers again."""
        with self._lock:
            self._cached = None
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(self.cache_path)
        logger.debug("discovery: forgot the document of %s", self.issuer)

    # -- network -----------------------------------------------------------
    def _fetch(
        self, session: requests.Session, until: float
    ) -> tuple[dict[str, Any], float | None]:
        for url in self.urls:
            logger.debug("discovery: fetching %s", url)
            answer = exchange(
                session, "GET", url, until=until, timeout=self.timeout,
                headers={"Accept": "application/json"}, allow_redirects=False,
            )  # fmt: skip
            if answer.failure == DEADLINE:
                raise DiscoveryError(
                    f"discovery document {url} did not arrive within the {self.deadline:g} s "
                    "deadline; will retry on the next call"
                )
            if answer.failure == TOO_LARGE:
                raise DiscoveryError(
                    f"discovery document {url} is larger than 1 MiB; will retry on the next call"
                )
            if answer.failure is not None:
                raise DiscoveryError(
                    f"discovery document {url} could not be fetched ({answer.detail}); "
                    "will retry on the next call"
                )
            if answer.status == 404:
                continue  # RFC 8414 servers need not serve the OIDC path
            if answer.status != 200:
                raise DiscoveryError(
                    f"discovery document {url} answered {answer.status}; "
                    "will retry on the next call"
                )
            document = self._validate(url, parse_json(answer.body))
            lifetime = self._lifetime(answer.headers.get("Cache-Control", ""))
            if lifetime <= 0:
                return document, None
            now = self.clock()
            self._save_cache(document, now, now + lifetime)
            return document, now + lifetime
        tried = " and ".join(self.urls)
        raise DiscoveryError(f"no discovery document for issuer {self.issuer} (404 at {tried})")

    def _lifetime(self, cache_control: str) -> float:
        if self.ttl == 0 or _NO_REUSE.search(cache_control):
            return 0.0
        match = _MAX_AGE.search(cache_control)
        # A cache may always keep a response for less than max-age: the ttl caps it.
        return min(float(match.group(1)), self.ttl) if match else self.ttl

    def _validate(self, url: str, document: Any) -> dict[str, Any]:
        if not isinstance(document, dict):
            raise DiscoveryError(f"discovery document {url} is not a JSON object")
        issuer = document.get("issuer")
        # OIDC Discovery §4.3, RFC 8414 §3.3: the issuer must be the one we asked for.
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer:
            raise DiscoveryError(
                f"discovery document {url} names issuer {issuer!r}, expected {self.issuer!r}"
            )
        # Plain http only where the issuer itself is on loopback (a test or dev server).
        local = is_loopback(urlsplit(self.issuer).hostname)
        try:
            check_endpoint_url(document.get("token_endpoint"), "token_endpoint", allow_http=local)
            for name, value in document.items():
                if (name.endswith("_endpoint") or name == "jwks_uri") and value is not None:
                    check_endpoint_url(value, name, allow_http=local)
        except ValueError as exc:
            raise DiscoveryError(f"discovery document {url}: {exc}") from None
        return document

    # -- disk cache ----------------------------------------------------------
    def _load_cache(self) -> tuple[dict[str, Any], float | None] | None:
        if self.ttl == 0:
            return None
        path = self.cache_path
        try:
            # The cache decides where client secrets and refresh tokens are sent:
            # the same checks as a token file (ours, regular, one link, no FIFO).
            raw = read_private(path, MAX_FILE_BYTES)
            if raw is None:
                return None
            data = json.loads(raw)
            if data.get("version") != _FILE_VERSION:
                raise ValueError("unknown format version")
            fetched_at = float(data["fetched_at"])
            # A smaller ttl than the one the file was written with applies at once.
            expires_at = min(float(data["expires_at"]), fetched_at + self.ttl)
            document = self._validate(str(path), data["document"])
        except OSError as exc:
            # A FIFO, socket, directory or foreign file in the way is a cache
            # miss, never a hang: the document is fetched and the file replaced.
            logger.warning(
                "discovery cache %s is unusable (%s); fetching again", path, exc.strerror
            )
            return None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            logger.warning(
                "discovery cache %s is unusable (%s); fetching again", path, type(exc).__name__
            )
            return None
        except DiscoveryError as exc:
            logger.warning("discovery cache rejected: %s; fetching again", exc)
            return None
        if not fetched_at <= self.clock() < expires_at:
            logger.debug("discovery: cache %s expired", path.name)
            return None
        logger.debug("discovery: cache hit %s", path.name)
        return document, expires_at

    def _save_cache(self, document: dict[str, Any], fetched_at: float, expires_at: float) -> None:
        path = self.cache_path
        payload = json.dumps(
            {
                "version": _FILE_VERSION,
                "issuer": self.issuer,
                "fetched_at": fetched_at,
                "expires_at": expires_at,
                "document": document,
            }
        ).encode()
        # A cache that cannot be written only costs the next process a fetch.
        try:
            private_directory(path.parent)
            write_atomically(path, payload)
        except OSError as exc:
            logger.warning("could not write the discovery cache %s: %s", path, exc.strerror)
            return
        remove_stale_temp_files(path.parent)
