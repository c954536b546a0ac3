"""A real loopback OAuth2/OIDC identity provider for tests.

:class:`LocalIdP` runs a :class:`http.server.ThreadingHTTPServer` on ``127.0.0.1`` (an
ephemeral port, HTTP/1.1 keep-alive) in a background thread. It serves:

* ``POST {issuer}/token``: the RFC 6749 token endpoint with single-use refresh token rotation,
  client credentials, password, JWT bearer (RFC 7523) and token exchange (RFC 8693) grants;
* ``GET {issuer}/.well-known/openid-configuration`` and ``.../oauth-authorization-server``
  (also at the RFC 8414 section 3.1 location) plus ``GET {issuer}/jwks``;
* a bearer-protected resource (RFC 6750) at ``{url}/resource``, with helper paths
  ``/resource/admin``, ``/forbidden``, ``/flaky503``, ``/redirect`` and ``/status/<code>``.

Faults are injected with :meth:`LocalIdP.fail_next`, and server-side state is changed with
:meth:`~LocalIdP.revoke`, :meth:`~LocalIdP.revoke_all` and :meth:`~LocalIdP.rotate_signing_key`.
It depends on the standard library and PyJWT; ``cryptography`` is imported only for RS256.
Tokens and secrets are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._grants import GRANT_JWT_BEARER as GRANT_JWT_BEARER
from ._grants import GRANT_TOKEN_EXCHANGE as GRANT_TOKEN_EXCHANGE
from ._grants import TYPE_ACCESS as TYPE_ACCESS
from ._grants import TYPE_JWT as TYPE_JWT
from ._idp import DEFAULT_ACCESS_TOKEN_LIFETIME as DEFAULT_ACCESS_TOKEN_LIFETIME
from ._idp import DEFAULT_CLIENTS, FAIL_MODES, LocalIdP
from ._idp import DEFAULT_HANG_SECONDS as DEFAULT_HANG_SECONDS
from ._idp import DEFAULT_STOP_TIMEOUT as DEFAULT_STOP_TIMEOUT

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["DEFAULT_CLIENTS", "FAIL_MODES", "LocalIdP"]


if _HAVE_PYTEST:

    @pytest.fixture
    def local_idp(request: pytest.FixtureRequest) -> Iterator[LocalIdP]:
        """Yield a started :class:`LocalIdP` and stop it after the test.

        Make it available to a test suite from its ``conftest.py``::

            from requests_tokenrotate.testing import local_idp  # noqa: F401

        Constructor arguments can be passed by indirect parametrization::

            @pytest.mark.parametrize("local_idp", [{"algorithm": "RS256"}], indirect=True)
            def test_rs256(local_idp): ...
        """
        kwargs: dict[str, Any] = getattr(request, "param", None) or {}
        with LocalIdP(**kwargs) as idp:
            yield idp

    __all__ += ["local_idp"]
