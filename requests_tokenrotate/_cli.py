"""``python -m requests_tokenrotate`` (console script ``tokenrotate``).

Commands: ``status``, ``login KEY`` (``--device``, ``--browser`` or a JSON
import), ``logout KEY [--revoke]``, ``refresh KEY`` and ``demo``. Errors are
one line on stderr and a non-zero exit code.

This module is the entry point: the argument parser, logging (WARNING lines
held back when an error line says the same), and the wording of errors for a
command that runs once; the commands themselves are in :mod:`._commands`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._commands import (
    CONFIG_ENV,
    EXIT_ERROR,
    cmd_demo,
    cmd_login,
    cmd_logout,
    cmd_refresh,
    cmd_status,
    logout_hint,
)
from .exceptions import DiscoveryError, TokenRotateError, TokenStoreError


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
        text = f"{text} ({logout_hint(key, args)})"
    return text
