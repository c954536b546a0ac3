"""Django settings for the DOT test server, built at startup by ``run.py``."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

#: Requesting this scope gives the token the short lifetime (tests that need the
#: server to expire an access token ask for it; everyone else gets the long one).
SHORT_SCOPE = "short"


def token_lifetime(long: int, short: int) -> Callable[[Any], int]:
    """oauthlib's ``expires_in`` callable: the lifetime of a token for this request."""

    def expires_in(request: Any) -> int:
        return short if SHORT_SCOPE in (request.scopes or ()) else long

    return expires_in


def build(
    *, db_path: str, access_token_lifetime: int, short_token_lifetime: int, rsa_private_key: str
) -> dict[str, Any]:
    """Keyword arguments for ``django.conf.settings.configure``."""
    return {
        "DEBUG": False,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
        "ROOT_URLCONF": "dot_server.urls",
        "USE_TZ": True,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oauth2_provider",
        ],
        # Sessions and users for the login tests: a scripted browser logs in at
        # /test/login, then drives DOT's own authorize and device views.
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        "TEMPLATES": [
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        "DATABASES": {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": db_path,
                # Threads of the server write concurrently: wait for the lock, do not fail.
                "OPTIONS": {"timeout": 30},
            }
        },
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        # Django's own advice for tests: the default PBKDF2 costs ~0.3 s per check,
        # and DOT hashes client secrets with the default hasher too.
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": True,
            "root": {"level": "CRITICAL", "handlers": []},
        },
        "OAUTH2_PROVIDER": {
            "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_lifetime,
            # Per-request lifetime: the long one, or the short one for SHORT_SCOPE.
            "EXTRA_SERVER_KWARGS": {
                "token_expires_in": token_lifetime(access_token_lifetime, short_token_lifetime)
            },
            "ROTATE_REFRESH_TOKEN": True,
            # Replaying a rotated refresh token revokes the whole family: a double
            # spend by the client under test is fatal and visible.
            "REFRESH_TOKEN_REUSE_PROTECTION": True,
            "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
            # Mint tokens without a browser; DOT plans to flip this default in 4.0.
            "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False,
            "OIDC_ENABLED": True,
            "OIDC_RSA_PRIVATE_KEY": rsa_private_key,
            "SCOPES": {
                "read": "Read",
                "write": "Write",
                "openid": "OpenID Connect",
                "admin": "Administer (no test token has it)",
                SHORT_SCOPE: "Short-lived access token",
            },
            "DEFAULT_SCOPES": ["read", "write"],
            # The login tests: poll a device code every second; RFC 9207 iss in
            # authorization responses (advertised in the discovery documents).
            "DEVICE_FLOW_INTERVAL": 1,
            "OAUTH_DEVICE_VERIFICATION_URI": "http://127.0.0.1/o/device/",
            "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        },
    }
