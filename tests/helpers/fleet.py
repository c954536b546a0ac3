"""Start fleet_worker.py processes as "hosts": separate homes, only the store and IdP shared."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).parent / "fleet_worker.py"


def read_line(child: subprocess.Popen, timeout: float) -> str:
    """One line from a child's stdout, or "" after ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return child.stdout.readline().strip()


class Fleet:
    """Worker processes grouped into hosts; a context manager that reaps them all."""

    def __init__(self, base: Path, store: str, token_url: str, **options: object) -> None:
        self.base = base
        self.store = store
        self.token_url = token_url
        self.options = options
        self.children: list[subprocess.Popen] = []

    def spawn(self, host: int, **options: object) -> subprocess.Popen:
        home = self.base / f"host{host}"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HOME": str(home),
            "REQUESTS_TOKENROTATE_HOME": str(home / "tokens"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
        }
        command = [sys.executable, str(WORKER), f"--store={self.store}"]
        command.append(f"--token-url={self.token_url}")
        for name, value in {**self.options, **options}.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value not in (None, False):
                command.append(f"{flag}={value}")
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.children.append(child)
        assert read_line(child, 30) == "ready"
        return child

    @staticmethod
    def send(child: subprocess.Popen, line: str = "go") -> None:
        child.stdin.write(line + "\n")
        child.stdin.flush()

    @staticmethod
    def collect(child: subprocess.Popen, timeout: float = 120) -> list[dict]:
        out, _ = child.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def run(self, hosts: int, processes: int, timeout: float = 120, **options) -> list[dict]:
        """hosts x processes workers released together; every thread's outcomes."""
        children = [self.spawn(h, **options) for h in range(hosts) for _ in range(processes)]
        for child in children:
            self.send(child)
        results: list[dict] = []
        for child in children:
            results.extend(self.collect(child, timeout))
        return results

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(10)
            for stream in (child.stdin, child.stdout):
                if stream and not stream.closed:
                    stream.close()
