"""Lazy, cached OIDC / RFC 8414 discovery of an issuer's token endpoint."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from ._endpoint import parse_json
from .exceptions import DiscoveryError

logger = logging.getLogger(__name__)

#: Seconds a discovery document is reused from the disk cache.
DEFAULT_DISCOVERY_TTL: Final = 86400.0
_OIDC: Final = "/.well-known/openid-configuration"
_RFC8414: Final = "/.well-known/oauth-authorization-server"
_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)
_NO_STORE: Final = re.compile(r"(?:^|,)\s*no-store\b", re.IGNORECASE)


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


def check_endpoint_url(url: Any, what: str) -> str:
    """``url`` if it is https, or http on a loopback host; else :class:`ValueError`."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"{what} is missing")
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return url
    raise ValueError(f"{what} {url!r} is not https (plain http is allowed on loopback only)")


def default_cache_dir() -> Path:
    """The platformdirs user cache directory for discovery documents."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("requests-tokenrotate", appauthor=False)) / "discovery"


class Discovery:
    """The discovery document of one issuer, fetched on first need.

    :param issuer: The issuer URL, compared with the document's ``issuer``.
    :param ttl: Seconds the document is cached on disk (default one day; a
        ``Cache-Control: max-age`` from the server wins; 0 disables the disk
        cache, the document then lives in memory for the process).
    :param cache_dir: Where to cache (default :func:`default_cache_dir`).
    """

    def __init__(
        self,
        issuer: str,
        *,
        ttl: float | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            check_endpoint_url(issuer, "issuer")
        except ValueError as exc:
            from .exceptions import InvalidConfiguration

            raise InvalidConfiguration(str(exc)) from None
        self.issuer = issuer.rstrip("/")
        self.ttl = DEFAULT_DISCOVERY_TTL if ttl is None else ttl
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"Discovery({self.issuer!r})"

    @property
    def cache_path(self) -> Path:
        """The disk cache file for this issuer."""
        directory = self._cache_dir if self._cache_dir is not None else default_cache_dir()
        return directory / (hashlib.sha256(self.issuer.encode()).hexdigest()[:32] + ".json")

    def document(self, session: requests.Session) -> dict[str, Any]:
        """The validated discovery document (memory, then disk, then network).

        :raises DiscoveryError: It could not be fetched or is unusable. Nothing
            is cached then: the next call tries again.
        """
        document = self._document
        if document is not None and (self.ttl == 0 or self.clock() < self._expires_at):
            return document
        with self._lock:  # one discovery for many threads
            if self._document is not None and (self.ttl == 0 or self.clock() < self._expires_at):
                return self._document
            cached = self._load_cache()
            if cached is None:
                cached = self._fetch(session)
            self._document, self._expires_at = cached
            return self._document

    def token_endpoint(self, session: requests.Session) -> str:
        """The ``token_endpoint`` of the issuer."""
        return str(self.document(session)["token_endpoint"])

    def _urls(self) -> list[str]:
        parts = urlsplit(self.issuer)
        origin = f"{parts.scheme}://{parts.netloc}"
        # OIDC Discovery §4 appends; RFC 8414 §3.1 inserts before the path.
        return [self.issuer + _OIDC, origin + _RFC8414 + parts.path.rstrip("/")]

    def _fetch(self, session: requests.Session) -> tuple[dict[str, Any], float]:
        last_url = ""
        for url in self._urls():
            last_url = url
            logger.debug("discovery: fetching %s", url)
            try:
                response = session.get(
                    url,
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise DiscoveryError(
                    f"discovery document {url} could not be fetched ({type(exc).__name__}); "
                    "will retry on the next call"
                ) from None
            with response:
                if response.status_code == 404:
                    continue
                if response.status_code != 200:
                    raise DiscoveryError(
                        f"discovery document {url} answered {response.status_code}; "
                        "will retry on the next call"
                    )
                document = self._validate(url, parse_json(response))
                ttl = self._ttl(response.headers.get("Cache-Control", ""))
            expires_at = self.clock() + ttl
            if ttl > 0:
                self._save_cache(document, expires_at)
            return document, expires_at
        raise DiscoveryError(f"no discovery document for issuer {self.issuer} (404 at {last_url})")

    def _ttl(self, cache_control: str) -> float:
        if self.ttl == 0 or _NO_STORE.search(cache_control):
            return 0.0
        match = _MAX_AGE.search(cache_control)
        return float(match.group(1)) if match else self.ttl

    def _validate(self, url: str, document: Any) -> dict[str, Any]:
        if not isinstance(document, dict):
            raise DiscoveryError(f"discovery document {url} is not a JSON object")
        issuer = document.get("issuer")
        # OIDC Discovery §4.3: the issuer must be the one we asked for.
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer:
            raise DiscoveryError(
                f"discovery document {url} names issuer {issuer!r}, expected {self.issuer!r}"
            )
        try:
            check_endpoint_url(document.get("token_endpoint"), "token_endpoint")
        except ValueError as exc:
            raise DiscoveryError(f"discovery document {url}: {exc}") from None
        return document

    def _load_cache(self) -> tuple[dict[str, Any], float] | None:
        if self.ttl == 0:
            return None
        path = self.cache_path
        try:
            data = json.loads(path.read_bytes())
            expires_at = float(data["expires_at"])
            document = self._validate(str(path), data["document"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, RecursionError, DiscoveryError):
            logger.warning("discovery cache %s is unusable; fetching again", path)
            return None
        if expires_at <= self.clock():
            return None
        logger.debug("discovery: cache hit %s", path.name)
        return document, expires_at

    def _save_cache(self, document: dict[str, Any], expires_at: float) -> None:
        path = self.cache_path
        payload = json.dumps({"document": document, "expires_at": expires_at}).encode()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(temp, path)
        except OSError as exc:  # a cache that cannot be written only costs a fetch
            logger.warning("could not write the discovery cache %s: %s", path, exc.strerror)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(temp)
