"""A real redis-server on 127.0.0.1 for the tests: free port, temporary directory, AOF on.

The binary comes from the Debian ``redis-server`` package (``.ci/run`` installs
it). A missing binary fails the test that needs it; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

#: Where the Debian package puts it; ``REDIS_SERVER`` overrides.
DEFAULT_BINARY = "/usr/bin/redis-server"
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` keep its port and data."""

    def __init__(self, directory: Path, *extra: str, tls: tuple[Path, Path] | None = None) -> None:
        binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or DEFAULT_BINARY
        if not Path(binary).is_file():
            raise RuntimeError(
                f"redis-server not found ({binary}); install the Debian package redis-server"
            )
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.extra = extra
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"

    def __repr__(self) -> str:
        return f"RedisServer({self.url!r})"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = ["--port", str(self.port)]
        if self.tls:  # TLS only: the plain port is off
            cert, key = self.tls
            ports = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-auth-clients",
                "no",
            ]
        command = [
            self.binary,
            *ports,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():  # bounded: the server answers PING once it has loaded the AOF
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.tls[0]))
                    with context.wrap_socket(conn, server_hostname="127.0.0.1") as secure:
                        secure.sendall(b"PING\r\n")
                        return secure.recv(64)[:1] in (b"+", b"-")  # PONG or NOAUTH
                conn.sendall(b"PING\r\n")
                return conn.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: redis-server flushes the AOF and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def client(self, **kwargs):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, **kwargs)
