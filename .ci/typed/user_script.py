"""A user's script, type-checked with mypy --strict against the installed wheel, then run.

It uses the public API the way the docs show: a token source, a mounted session,
``auth=``, a store of the user's own, and the error tree.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator

import requests

import requests_tokenrotate as rt
from requests_tokenrotate.testing import LocalIdP


class DictStore:
    """A store of the user's own, satisfying the TokenStore protocol (one process)."""

    def __init__(self) -> None:
        self._tokens: dict[str, rt.Token] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> rt.Token | None:
        return self._tokens.get(key)

    def save(self, key: str, token: rt.Token) -> None:
        self._tokens[key] = token

    def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._tokens)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        if not self._lock.acquire(timeout=timeout):
            raise rt.LockTimeout(f"busy for {timeout:g} s", key=key)
        try:
            yield
        finally:
            self._lock.release()


def statuses(session: requests.Session, url: str, n: int) -> list[int]:
    return [session.get(url, timeout=10).status_code for _ in range(n)]


def main() -> int:
    with LocalIdP() as idp, tempfile.TemporaryDirectory() as directory:
        client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
        stores: list[rt.TokenStore] = [rt.FileTokenStore(directory), DictStore()]
        for store in stores:
            source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "default")
            source.login(idp.issue_tokens())
            token: rt.Token = source.token()
            assert token.expires_at is not None
            session = requests.Session()
            adapter: rt.TokenRotateAdapter = rt.mount(session, idp.url + "/", source)
            assert isinstance(adapter, requests.adapters.HTTPAdapter)
            fresh = source.refresh(token)
            assert fresh.access_token != token.access_token
            codes = statuses(session, idp.resource_url, 3)
            auth = rt.TokenRotateAuth(source, origins=idp.url)
            codes.append(requests.get(idp.resource_url, auth=auth, timeout=10).status_code)
            session.close()
            assert codes == [200] * 4, codes
            source.logout()
            try:
                source.token()
            except rt.NotLoggedIn as exc:
                error: rt.TokenRotateError = exc
                assert isinstance(error, requests.RequestException)
            else:
                raise AssertionError("logout left a token behind")
    print("typed user script: FileTokenStore and a user store, 4 x 200 each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
