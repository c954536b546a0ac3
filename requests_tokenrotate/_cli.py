"""``python -m requests_tokenrotate`` (console script ``tokenrotate``).

Commands: ``status``, ``login KEY`` (``--device``, ``--browser`` or a JSON
import), ``logout KEY [--revoke]``, ``refresh KEY`` and ``demo``. Errors are
one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import configparser
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._endpoint import OAuthClient
from ._grants import RefreshTokenGrant
from ._source import TokenSource
from ._stores import FileTokenStore
from ._storespec import store_from_spec
from ._token import Token
from .exceptions import (
    DiscoveryError,
    InvalidConfiguration,
    NotLoggedIn,
    TokenRotateError,
    TokenStoreError,
)

#: Where ``refresh`` reads client settings when ``--config`` is not given.
if TYPE_CHECKING:
    from ._protocol import TokenStore

CONFIG_ENV: Final = "REQUESTS_TOKENROTATE_CONFIG"
EXIT_ERROR: Final = 1
_CLIENT_OPTIONS: Final = (
    "token_url", "issuer", "client_id", "client_secret_env", "auth_method", "scope", "audience",
    "resource", "authorization_url", "device_authorization_url", "revocation_url",
)  # fmt: skip


def _no_grant(stale: Token | None) -> Token:
    raise NotLoggedIn("this command cannot refresh; use `refresh` with client settings")


def _countdown(seconds: float) -> str:
    sign, seconds = ("", seconds) if seconds >= 0 else ("-", -seconds)
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m {secs}s" if minutes else f"{sign}{secs}s"


def _store(args: argparse.Namespace) -> TokenStore:
    if args.store and args.dir:
        raise InvalidConfiguration("pass --store or --dir, not both")
    return store_from_spec(args.store) if args.store else FileTokenStore(args.dir)


def _entries(store: TokenStore) -> Iterator[tuple[str, Token | TokenRotateError | None]]:
    """Every key with its token (or its error); in one query if the store can."""
    items = getattr(store, "items", None)
    if callable(items):
        yield from items()
        return
    for key in store.keys():  # noqa: SIM118  # a store, not a dict
        try:
            yield key, store.load(key)
        except TokenRotateError as exc:
            yield key, exc


def _describe(
    store: TokenStore,
    key: str,
    token: Token | TokenRotateError | None,
    now: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    row: dict[str, Any] = {"key": key}
    if isinstance(store, FileTokenStore):
        row["path"] = str(store.path(key))
    if isinstance(token, TokenRotateError):
        row.update(state="unreadable", error=f"{token} ({_logout_hint(key, args)})")
        return row
    if token is None:
        row.update(state="missing")
        return row
    expires_in = None if token.expires_at is None else token.expires_at - now
    if token.invalidated_at is not None:
        state = "invalidated"
    elif expires_in is not None and expires_in <= 0:
        state = "expired"
    else:
        state = "ok"
    row.update(
        state=state,
        expires_at=token.expires_at,
        expires_in=expires_in,
        has_refresh_token=token.refresh_token is not None,
        invalidated_at=token.invalidated_at,
        scope=token.scope,
        token_type=token.token_type,
    )
    return row


def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    now = time.time()
    rows = [_describe(store, key, token, now, args) for key, token in _entries(store)]
    describe = getattr(store, "describe", None)  # e.g. the keychain backend in use
    if isinstance(store, FileTokenStore):
        where = str(store.directory)
    else:
        where = describe() if callable(describe) else repr(store)
    if args.json:
        print(
            json.dumps(
                {
                    "directory" if isinstance(store, FileTokenStore) else "store": where,
                    "keys": rows,
                },
                indent=2,
            )
        )
        return 0
    print(f"store: {where}")
    if not rows:
        print("no tokens stored")
        return 0
    print(f"{'KEY':<30} {'EXPIRES IN':<12} {'REFRESH':<8} STATE")
    for row in rows:
        expires = "unknown" if row.get("expires_in") is None else _countdown(row["expires_in"])
        refresh = "yes" if row.get("has_refresh_token") else "no"
        state = row["state"] if "error" not in row else f"unreadable: {row['error']}"
        print(f"{row['key']:<30} {expires:<12} {refresh:<8} {state}")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    if args.device or args.browser:
        return _interactive_login(args)
    raw = Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read()
    try:
        data = json.loads(raw, parse_constant=_reject)
    except (ValueError, RecursionError):
        raise InvalidConfiguration(
            "the input is not JSON; pass a token-endpoint response such as "
            '{"access_token": "...", "refresh_token": "...", "expires_in": 3600}'
        ) from None
    try:
        token = Token.from_response(data)
    except ValueError as exc:
        raise InvalidConfiguration(f"cannot log in: {exc}") from None
    source = TokenSource(_no_grant, _store(args), args.key)
    source.login(token)
    expiry = "unknown" if token.expires_at is None else _countdown(token.expires_at - time.time())
    print(
        f"logged in {args.key!r}: expires in {expiry}, refresh token: "
        f"{'yes' if token.refresh_token else 'no'}"
    )
    return 0


def _reject(name: str) -> Any:
    raise ValueError(name)


def _interactive_login(args: argparse.Namespace) -> int:
    from ._browser import login_browser
    from ._login import login_device

    source = _client_source(args, "login --device/--browser")
    settings = _client_settings(args)
    extra: dict[str, str] = {}
    for pair in args.param or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidConfiguration(f"--param takes NAME=VALUE, not {pair!r}")
        extra[name] = value
    options: dict[str, Any] = {
        "scope": settings.get("scope"),
        "audience": settings.get("audience"),
        "resource": settings.get("resource"),
        "extra": extra,
    }
    if args.device:
        token = login_device(source, **options)
    else:
        token = login_browser(
            source,
            **options,
            open_browser=None if args.no_browser else _open_browser,
            timeout=args.timeout,
        )
    expiry = "unknown" if token.expires_at is None else _countdown(token.expires_at - time.time())
    print(f"logged in {args.key!r}: expires in {expiry}, refresh token: "
          f"{'yes' if token.refresh_token else 'no'}")  # fmt: skip
    if token.refresh_token is None:
        print(
            "tokenrotate: warning: no refresh token was issued; the login ends when the access "
            "token expires (ask for the offline_access scope)",
            file=sys.stderr,
        )
    return 0


def _open_browser(url: str) -> object:
    import webbrowser

    return webbrowser.open(url)


def cmd_logout(args: argparse.Namespace) -> int:
    if not args.revoke:
        TokenSource(_no_grant, _store(args), args.key).logout()
        print(f"logged out {args.key!r}")
        return 0
    source = _client_source(args, "logout --revoke")
    try:
        source.logout(revoke=True)
    except TokenRotateError as exc:
        if isinstance(exc, TokenStoreError):
            raise
        print(
            f"tokenrotate: error: revocation failed, the server-side token may still be live; "
            f"{args.key!r} was kept so that `logout --revoke` can be retried (`logout` without "
            f"--revoke forgets it): {exc}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"revoked and logged out {args.key!r}")
    return 0


def _client_settings(args: argparse.Namespace) -> dict[str, str]:
    settings: dict[str, str] = {}
    config = args.config or os.environ.get(CONFIG_ENV)
    if config:
        parser = configparser.ConfigParser(interpolation=None)
        if not parser.read(config):
            raise InvalidConfiguration(f"cannot read the config file {config}")
        if parser.has_section(args.key):
            settings.update(parser[args.key])
        else:
            settings.update(parser.defaults())
            if "client_id" not in settings and not getattr(args, "client_id", None):
                sections = ", ".join(f"[{name}]" for name in parser.sections()) or "none"
                raise InvalidConfiguration(
                    f"the config file {config} has no [{args.key}] section (it has: "
                    f"{sections}); add one with client_id and token_url or issuer"
                )
    for name in _CLIENT_OPTIONS:
        value = getattr(args, name, None)
        if value:
            settings[name] = value
    return settings


def _client_source(args: argparse.Namespace, command: str) -> TokenSource:
    """A refresh-token source for KEY, with the client from the flags or the config file."""
    settings = _client_settings(args)
    if "client_id" not in settings:
        raise InvalidConfiguration(
            f"{command} needs client settings: --client-id and --token-url or --issuer, "
            "or a --config file with a [KEY] section"
        )
    secret = None
    if settings.get("client_secret_env"):
        secret = os.environ.get(settings["client_secret_env"])
        if not secret:
            raise InvalidConfiguration(
                f"environment variable {settings['client_secret_env']} (the client secret) is unset"
            )
    client = OAuthClient(
        token_url=settings.get("token_url"),
        issuer=settings.get("issuer"),
        client_id=settings["client_id"],
        client_secret=secret,
        auth_method=settings.get("auth_method"),
        authorization_url=settings.get("authorization_url"),
        device_authorization_url=settings.get("device_authorization_url"),
        revocation_url=settings.get("revocation_url"),
    )
    grant = RefreshTokenGrant(client, scope=settings.get("scope"))
    return TokenSource(grant, _store(args), args.key)


def cmd_refresh(args: argparse.Namespace) -> int:
    source = _client_source(args, "refresh")
    token = source.refresh(source.store.load(args.key))
    expiry = "unknown" if token.expires_at is None else _countdown(token.expires_at - time.time())
    print(f"refreshed {args.key!r}: expires in {expiry}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(
        processes=args.processes,
        threads=args.threads,
        duration=args.duration,
        lifetime=args.lifetime,
        rotate_every=args.rotate_every,
        quiet=args.quiet,
        client=args.client,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenrotate", description="Inspect and manage requests-tokenrotate token stores."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging (secret-free)")
    # Also accepted after the command; SUPPRESS keeps a subcommand's default from
    # overwriting a -v given before it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[verbose])

    def with_dir(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--dir", help="token directory (default: the platformdirs location)")
        sub.add_argument(
            "--store",
            metavar="SPEC",
            help="the store: a directory, or postgresql://user@host/db (password from "
            "PGPASSWORD or ~/.pgpass)",
        )
        return sub

    status = with_dir(command("status", "list the stored keys"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    def with_client(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help=f"INI file with a [KEY] section (env {CONFIG_ENV})")
        sub.add_argument("--token-url", dest="token_url")
        sub.add_argument("--issuer")
        sub.add_argument("--client-id", dest="client_id")
        secret_help = "environment variable with the secret"
        sub.add_argument("--client-secret-env", dest="client_secret_env", help=secret_help)
        sub.add_argument("--auth-method", dest="auth_method")
        sub.add_argument("--scope")
        return sub

    login = with_client(with_dir(command(
        "login", "log KEY in (device code or browser), or seed it from a token response"
    )))  # fmt: skip
    login.add_argument("key")
    how = login.add_mutually_exclusive_group()
    how.add_argument("--device", action="store_true", help="device authorization (RFC 8628)")
    how.add_argument("--browser", action="store_true", help="browser: authorization code + PKCE")
    how.add_argument("--file", help="import a JSON token response (default: read stdin)")
    login.add_argument("--audience")
    login.add_argument("--resource", help="resource indicator (RFC 8707)")
    login.add_argument("--param", action="append", help="extra authorization parameter NAME=VALUE")
    login.add_argument("--authorization-url", dest="authorization_url")
    login.add_argument("--device-authorization-url", dest="device_authorization_url")
    login.add_argument("--no-browser", action="store_true", help="only print the login URL")
    login.add_argument("--timeout", type=float, default=300.0, help="browser wait, s")
    login.set_defaults(func=cmd_login)

    logout = with_client(with_dir(command("logout", "remove KEY")))
    logout.add_argument("key")
    logout.add_argument(
        "--revoke", action="store_true", help="revoke the tokens at the server first (RFC 7009)"
    )
    logout.add_argument("--revocation-url", dest="revocation_url")
    logout.set_defaults(func=cmd_logout)

    refresh = with_client(with_dir(command("refresh", "force a gated refresh")))
    refresh.add_argument("key")
    refresh.set_defaults(func=cmd_refresh)

    demo = command("demo", "run workers against a loopback IdP")
    demo.add_argument("-p", "--processes", type=int, default=4)
    demo.add_argument(
        "-t", "--threads", type=int, default=4, help="threads (or tasks with --client httpx)"
    )
    demo.add_argument(
        "--client",
        choices=["requests", "httpx"],
        default="requests",
        help="requests threads through the adapter, or httpx async tasks (extra: httpx)",
    )
    demo.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    demo.add_argument("--lifetime", type=float, default=2.0, help="access-token lifetime, s")
    demo.add_argument(
        "--rotate-every", type=float, default=3.0, help="seconds between IdP key rotations; 0: off"
    )
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler = _setup_logging(args.verbose)
    try:
        code = int(args.func(args))
    except TokenRotateError as exc:
        # The error line says it all: drop the WARNING lines that led to it.
        handler.discard()
        print(f"tokenrotate: error: {_one_shot(exc, args)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a --file or --config that cannot be read
        handler.flush()
        print(f"tokenrotate: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        handler.flush()
        return 130
    handler.flush()
    return code


class _Held(logging.Handler):
    """Holds WARNING records until the command ends: printed after a success,
    dropped after an error whose one line reports the same thing."""

    def __init__(self, target: logging.Handler | None) -> None:
        super().__init__()
        self.target = target
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is None:
            return
        self.records.append(record)
        del self.records[:-100]  # bounded

    def flush(self) -> None:
        records, self.records = self.records, []
        for record in records:
            if self.target is not None:
                self.target.handle(record)

    def discard(self) -> None:
        self.records = []


def _setup_logging(verbose: bool) -> _Held:
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbose:  # DEBUG lines as they happen
        logging.basicConfig(level=logging.DEBUG, handlers=[stream])
        return _Held(None)
    held = _Held(stream)
    logging.basicConfig(level=logging.WARNING, handlers=[held])
    return held


def _one_shot(exc: TokenRotateError, args: argparse.Namespace) -> str:
    """The error's message, worded for a command that runs once."""
    text = str(exc)
    if isinstance(exc, DiscoveryError):
        # The library's "the next call retries" is for long-lived processes.
        text = text.replace("will retry on the next call", "run the command again")
    key = getattr(args, "key", None) or exc.key
    if isinstance(exc, TokenStoreError) and key and exc.path and not exc.hint:
        text = f"{text} ({_logout_hint(key, args)})"
    return text


def _logout_hint(key: str, args: argparse.Namespace) -> str:
    directory, spec = getattr(args, "dir", None), getattr(args, "store", None)
    if spec:
        where = f" --store {shlex.quote(_without_password(spec))}"
    else:
        where = f" --dir {shlex.quote(directory)}" if directory else ""
    return f"to log out: `tokenrotate logout {shlex.quote(key)}{where}`"


def _without_password(spec: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(spec)
        if parts.password is None:
            return spec
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        return "SPEC"
    return urlunsplit(parts._replace(netloc=netloc))
