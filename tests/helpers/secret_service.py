"""A real Secret Service for the keyring tests: a private D-Bus session bus and
gnome-keyring-daemon with an unlocked login collection, in a temporary home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The login collection's password (the daemon reads it on stdin to unlock).
PASSWORD = b"tokenrotate-tests"


class SecretService:
    """Start with :meth:`start`, stop with :meth:`stop`; :attr:`env` reaches it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env: dict[str, str] = {}
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        tools = {tool: shutil.which(tool) for tool in ("dbus-daemon", "gnome-keyring-daemon")}
        for tool, path in tools.items():
            if path is None:
                raise RuntimeError(
                    f"{tool} is not installed: the keyring tests need a real Secret Service "
                    "(apt-get install dbus gnome-keyring)"
                )
        home = self.root / "home"
        runtime = self.root / "run"
        for directory in (home, runtime):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        socket = self.root / "bus"
        address = f"unix:path={socket}"
        bus = subprocess.Popen(
            [str(tools["dbus-daemon"]), "--session", "--nofork", "--nopidfile", f"--address={address}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._processes.append(bus)
        deadline = time.monotonic() + 10
        while not socket.exists():  # bounded: the daemon creates it at start-up
            if time.monotonic() > deadline or bus.poll() is not None:
                self.stop()
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(0.01)
        self.env = {
            "DBUS_SESSION_BUS_ADDRESS": address,
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
        }
        daemon = subprocess.Popen(
            [str(tools["gnome-keyring-daemon"]), "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        assert daemon.stdin is not None
        daemon.stdin.write(PASSWORD)
        daemon.stdin.close()
        self._processes.append(daemon)
        self._wait_for_collection()

    def _wait_for_collection(self) -> None:
        probe = (
            "import keyring; k = keyring.get_keyring(); "
            "k.set_password('probe', 'probe', 'ok'); "
            "assert k.get_password('probe', 'probe') == 'ok'"
        )
        deadline = time.monotonic() + 20
        while True:  # bounded: the daemon claims its bus name shortly after start
            done = subprocess.run(
                [sys.executable, "-c", probe],
                env={**os.environ, **self.env},
                capture_output=True,
                timeout=20,
                check=False,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Secret Service did not come up: {done.stderr[-500:]!r}")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        self._processes.clear()
