"""Run django-oauth-toolkit on 127.0.0.1 for the real-server tests.

    python run.py --port 0 --db /tmp/x/db.sqlite3 [--access-token-lifetime 300]
                  [--short-token-lifetime 2]

Configures Django (sqlite at ``--db``, an RSA key generated in memory for OIDC),
migrates, creates a test user and the applications, prints one JSON line with
the port, the user's credentials and each client's id and secret, then serves
with a threaded ``wsgiref`` server until SIGTERM or stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socketserver
import sys
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# ``dot_server`` is importable as a package from its parent directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def rsa_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def setup(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.conf import settings
    from django.core.management import call_command

    from dot_server import settings as project

    settings.configure(
        **project.build(
            db_path=args.db,
            access_token_lifetime=args.access_token_lifetime,
            short_token_lifetime=args.short_token_lifetime,
            rsa_private_key=rsa_private_key(),
        )
    )
    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    application = get_application_model()
    password = secrets.token_urlsafe(16)
    user = get_user_model().objects.create_user("alice", password=password)
    # name: (client type, grant, secret). "special"'s secret has characters that
    # RFC 6749 §2.3.1 form-encodes inside HTTP Basic auth.
    apps = {
        "confidential": (application.CLIENT_CONFIDENTIAL, application.GRANT_PASSWORD, True),
        "public": (application.CLIENT_PUBLIC, application.GRANT_PASSWORD, False),
        "service": (application.CLIENT_CONFIDENTIAL, application.GRANT_CLIENT_CREDENTIALS, True),
        "special": (application.CLIENT_CONFIDENTIAL, application.GRANT_CLIENT_CREDENTIALS, True),
        # The login tests: a device (RFC 8628) and browsers (code + PKCE, loopback).
        "device": (application.CLIENT_PUBLIC, application.GRANT_DEVICE_CODE, False),
        "browser": (application.CLIENT_PUBLIC, application.GRANT_AUTHORIZATION_CODE, False),
        "webapp": (application.CLIENT_CONFIDENTIAL, application.GRANT_AUTHORIZATION_CODE, True),
    }
    clients: dict[str, dict[str, str | None]] = {}
    for name, (client_type, grant, has_secret) in apps.items():
        secret = secrets.token_urlsafe(32) if has_secret else None
        if name == "special":
            secret = "a+b%2F c:d&\u00e9=" + secrets.token_urlsafe(8)
        client_id = f"dot-{name}"
        application.objects.create(
            name=name,
            client_id=client_id,
            client_secret=secret or "",  # hashed on save: print the plain text now
            client_type=client_type,
            authorization_grant_type=grant,
            user=user if grant == application.GRANT_PASSWORD else None,
            # RFC 8252 §7.3: DOT lets a loopback redirect URI use any port.
            redirect_uris="http://127.0.0.1/callback"
            if grant == application.GRANT_AUTHORIZATION_CODE
            else "",
            skip_authorization=grant == application.GRANT_AUTHORIZATION_CODE,
        )
        clients[name] = {"client_id": client_id, "client_secret": secret}
    return {"username": "alice", "password": password, "clients": clients}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", required=True, help="sqlite file (in a temporary directory)")
    parser.add_argument("--access-token-lifetime", type=int, default=300)
    parser.add_argument("--short-token-lifetime", type=int, default=2)
    args = parser.parse_args()
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)

    info = setup(args)
    from django.core.wsgi import get_wsgi_application

    server = make_server(
        "127.0.0.1",
        args.port,
        get_wsgi_application(),
        server_class=ThreadingWSGIServer,
        handler_class=QuietHandler,
    )
    info["port"] = server.server_address[1]

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    if not sys.stdin.isatty():
        # The parent holds our stdin open; if it dies without stopping us, so do we.
        threading.Thread(target=lambda: (sys.stdin.read(), stop()), daemon=True).start()
    print(json.dumps(info), flush=True)
    with server:
        server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
