"""A throwaway PostgreSQL cluster for the tests: initdb, pg_ctl start/stop/restart.

The cluster lives in a temporary directory owned by the user that runs it
(PostgreSQL refuses to run as root: as root, the ``postgres`` system user runs
initdb and pg_ctl through ``runuser``), listens on 127.0.0.1 at a free port
with scram-sha-256 password authentication, and holds one application role
whose password the redaction tests look for.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

#: The application role's password: URL-special characters on purpose.
APP_PASSWORD = "pg-S3cret#pa55/w@rd"
SUPERUSER_PASSWORD = "pg-superuser-pw"
BINARY_GLOB = "/usr/lib/postgresql/*/bin"


def find_bindir() -> Path:
    """Debian's versioned bin directory (newest), else the PATH's."""
    candidates = sorted(glob.glob(BINARY_GLOB), key=lambda p: int(Path(p).parent.name))
    for directory in reversed(candidates):
        if Path(directory, "initdb").exists():
            return Path(directory)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise FileNotFoundError(
        "PostgreSQL's initdb was not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install the Debian package `postgresql` (.ci/run does)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster; :meth:`start`, :meth:`stop`, :meth:`restart`, DSNs for two roles."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="rt-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if self._as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        command = [str(self.bindir / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(  # our own arguments
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}\n{log}")
        return done.stdout

    @property
    def admin_dsn(self) -> str:
        return (
            f"postgresql://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{self.port}/postgres"
            "?connect_timeout=5"
        )

    def dsn(self, dbname: str = "tokens") -> str:
        """The application role's URL (password percent-encoded)."""
        return f"postgresql://app:{quote(APP_PASSWORD, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def setup_roles(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'")
            conn.execute("CREATE DATABASE tokens OWNER app")

    def admin(self, query: str, params: tuple = ()) -> list[tuple]:
        """Run ``query`` as the superuser on the tokens database; the rows it returns."""
        import psycopg

        dsn = self.admin_dsn.replace("/postgres?", "/tokens?")
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)
