"""Start fleet_worker.py processes as "hosts": separate homes, only the store and IdP shared.

Every cross-process test goes through :class:`Fleet` (tests/conftest.py's
``fleet`` fixture makes them and reaps them): ``run`` for a storm released
together, ``start``/``collect`` to act while they run, ``spawn``/``send`` to
drive one worker step by step (``--pause-at``).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

WORKER = Path(__file__).parent / "fleet_worker.py"
#: Seconds a worker may take to import and build its store before it says ``ready``.
READY_TIMEOUT = 60.0


def read_line(child: subprocess.Popen, timeout: float) -> str:
    """One line from a child's stdout, or "" after ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return child.stdout.readline().strip()


class Fleet:
    """Worker processes grouped into hosts; a context manager that reaps them all.

    ``options`` (and each call's) become the worker's flags: ``lock_timeout=3``
    is ``--lock-timeout=3``, ``wrap=True`` is ``--wrap``. Host ``n`` has its own
    HOME, token directory and XDG directories under ``base/host<n>``.
    """

    def __init__(self, base: Path, store: str, token_url: str, **options: object) -> None:
        self.base = base
        self.store = store
        self.token_url = token_url
        self.options = options
        self.children: list[subprocess.Popen] = []
        #: ``time.time()`` when the last :meth:`start` released its workers.
        self.went = 0.0

    def _popen(self, host: int, options: dict[str, object]) -> subprocess.Popen:
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
        return child

    def spawn(self, host: int, **options: object) -> subprocess.Popen:
        """One worker, ready and waiting for :meth:`send`."""
        child = self._popen(host, options)
        assert read_line(child, READY_TIMEOUT) == "ready"
        return child

    def launch(self, plan: Iterable[tuple[int, dict[str, object]]]) -> list[subprocess.Popen]:
        """One worker per ``(host, options)``, all started, then released together."""
        children = [self._popen(host, options) for host, options in plan]
        for child in children:  # a barrier across processes: all ready, then go
            assert read_line(child, READY_TIMEOUT) == "ready"
        self.went = time.time()
        for child in children:
            self.send(child)
        return children

    def start(self, hosts: int, processes: int, **options: object) -> list[subprocess.Popen]:
        """hosts x processes workers with the same options, released together."""
        return self.launch((h, options) for h in range(hosts) for _ in range(processes))

    @staticmethod
    def send(child: subprocess.Popen, line: str = "go") -> None:
        child.stdin.write(line + "\n")
        child.stdin.flush()

    @staticmethod
    def collect(child: subprocess.Popen, timeout: float = 120) -> list[dict]:
        """One worker's outcomes, once it has finished (bounded)."""
        out, _ = child.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def gather(self, children: list[subprocess.Popen], timeout: float = 120) -> list[dict]:
        """Every outcome of ``children``, in one list."""
        return [outcome for child in children for outcome in self.collect(child, timeout)]

    def run(self, hosts: int, processes: int, timeout: float = 120, **options) -> list[dict]:
        """hosts x processes workers released together; every caller's outcomes."""
        return self.gather(self.start(hosts, processes, **options), timeout)

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(10)
            for stream in (child.stdin, child.stdout):
                if stream and not stream.closed:
                    stream.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
