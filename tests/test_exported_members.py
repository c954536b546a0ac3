"""The public namespace: __all__ matches what the package exports (httpx's check)."""

from __future__ import annotations

import requests

import requests_tokenrotate as rt
from requests_tokenrotate import exceptions


def test_all_matches_the_public_namespace():
    """__all__ is sorted and lists exactly the public names the package defines."""
    public = {name for name in dir(rt) if not name.startswith("_")} - {
        "annotations",
        "logging",
        "TYPE_CHECKING",
        "exceptions",
        "testing",
        "httpx",  # the public submodule, an attribute once imported
    }
    assert rt.__all__ == sorted(rt.__all__)
    assert set(rt.__all__) - {"__version__"} == public


def test_every_error_is_a_requests_exception_and_exported():
    """Each exception in exceptions.py is a RequestException and re-exported at the top."""
    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        assert issubclass(error, requests.RequestException)
        assert getattr(rt, name) is error
    assert issubclass(rt.InvalidConfiguration, ValueError)


def test_lazy_members_resolve_and_are_listed():
    """Stores of optional extras are in dir() and resolve on first access."""
    assert "PostgresTokenStore" in dir(rt)
    assert rt.PostgresTokenStore.__name__ == "PostgresTokenStore"


def test_importing_the_package_defers_heavy_imports():
    """A fresh `import requests_tokenrotate` loads neither portalocker, jwt, platformdirs nor httpx."""
    import subprocess
    import sys

    code = (
        "import sys, requests_tokenrotate; "
        "print(sorted(m for m in ('portalocker', 'jwt', 'platformdirs', 'redis', 'keyring', "
        "'psycopg', 'http.server', 'httpx', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
