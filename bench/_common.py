"""Shared pieces: the loopback guard, a socketless stub adapter, a LocalIdP in its own
process, token files for the peers, an injectable clock, statistics and tables."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict

#: requests-oauthlib refuses http:// URLs unless this is set; every server here is loopback.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

SPAWN = mp.get_context("spawn")
#: A URL for the socketless stub adapter: never resolved, never connected.
STUB_PREFIX = "https://api.bench.invalid/"
STUB_URL = STUB_PREFIX + "v1/things"
_LOOPBACK_NAMES = ("localhost", "::1")


# -- only loopback -------------------------------------------------------------------
def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect":
        return
    address = args[1]
    if not isinstance(address, tuple):
        return  # AF_UNIX and friends
    host = str(address[0])
    if not (host.startswith("127.") or host in _LOOPBACK_NAMES):
        raise RuntimeError(f"bench: refusing a non-loopback connection to {host}")


_guarded = False


def loopback_only() -> None:
    """Install (once per process) an audit hook that refuses non-loopback connects."""
    global _guarded
    if not _guarded:
        sys.addaudithook(_audit)
        _guarded = True


# -- the socketless transport --------------------------------------------------------
_CANNED_BODY = b'{"ok": true}'
_CANNED_HEADERS = {"Content-Type": "application/json", "Content-Length": str(len(_CANNED_BODY))}


def canned_response(adapter: BaseAdapter, request: requests.PreparedRequest) -> requests.Response:
    """A 200 JSON response to ``request``, as HTTPAdapter.build_response would shape it."""
    response = requests.Response()
    response.status_code = 200
    response.headers = CaseInsensitiveDict(_CANNED_HEADERS)
    response._content = _CANNED_BODY
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    response.connection = adapter
    response.reason = "OK"
    return response


class StubAdapter(HTTPAdapter):
    """Answers every request with :func:`canned_response`, without a socket.

    An :class:`HTTPAdapter` subclass, so a subclass of an adapter that calls
    ``super().send`` can put it under that call (see :func:`stub_rotate_adapter`).
    """

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        return canned_response(self, request)


def stub_rotate_adapter(source: Any, **kwargs: Any) -> HTTPAdapter:
    """A TokenRotateAdapter whose ``super().send`` is the stub: the MRO puts
    :class:`StubAdapter` between TokenRotateAdapter and HTTPAdapter, so all of
    TokenRotateAdapter.send runs and only the socket work is replaced."""
    import requests_tokenrotate as rt

    class StubRotateAdapter(rt.TokenRotateAdapter, StubAdapter):
        pass

    kwargs.setdefault("origins", STUB_PREFIX)
    return StubRotateAdapter(source, **kwargs)


def has_transport() -> bool:
    """Whether requests_tokenrotate exports the transport (adapter, auth, mount)."""
    import requests_tokenrotate as rt

    return all(hasattr(rt, name) for name in ("TokenRotateAdapter", "TokenRotateAuth", "mount"))


# -- an injectable clock -------------------------------------------------------------
class StepClock:
    """Epoch seconds that only move when told to (for LocalIdP and TokenSource)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- a LocalIdP in its own process ---------------------------------------------------
def _serve_idp(conn: Any, kwargs: dict[str, Any]) -> None:
    loopback_only()
    from requests_tokenrotate.testing import LocalIdP

    with LocalIdP(**kwargs) as idp:
        conn.send({"url": idp.url, "token_url": idp.token_url, "resource_url": idp.resource_url})
        while True:
            if not conn.poll(600):
                return  # the parent is gone: stop by ourselves
            name, args, kw = conn.recv()
            if name == "stop":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", getattr(idp, name)(*args, **kw)))
            except Exception as exc:  # reported to the parent
                conn.send(("error", repr(exc)))


class RemoteIdP:
    """A :class:`LocalIdP` in a child process, so that it does not share our GIL.

    Methods are forwarded by name: ``issue_tokens``, ``counters``, ``reset_counters``,
    ``rotate_signing_key``.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._conn: Any = None
        self._proc: Any = None
        self.url = self.token_url = self.resource_url = ""

    def __enter__(self) -> RemoteIdP:
        parent, child = SPAWN.Pipe()
        self._proc = SPAWN.Process(target=_serve_idp, args=(child, self._kwargs), daemon=True)
        self._proc.start()
        if not parent.poll(60):
            raise RuntimeError("the LocalIdP process did not start")
        info = parent.recv()
        self._conn = parent
        self.url, self.token_url, self.resource_url = (
            info["url"],
            info["token_url"],
            info["resource_url"],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.call("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        if not self._conn.poll(60):
            raise RuntimeError(f"the LocalIdP process did not answer {name}")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"LocalIdP.{name} failed: {value}")
        return value

    def issue_tokens(self, client_id: str = "cli", **kwargs: Any) -> dict[str, Any]:
        return dict(self.call("issue_tokens", client_id, **kwargs))

    def counters(self) -> dict[str, int]:
        return dict(self.call("counters"))


# -- token files (how the peers persist tokens here) ---------------------------------
def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` via a temporary file and os.replace."""
    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def read_json(path: str) -> dict[str, Any]:
    with open(path) as handle:
        return dict(json.load(handle))


def check_refresh_token(token_url: str, refresh_token: str | None, client_id: str) -> bool:
    """Spend ``refresh_token`` once: True if the server still honours it."""
    if not refresh_token:
        return False
    from bench._peers import CLIENT_SECRETS

    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    secret = CLIENT_SECRETS.get(client_id)
    if secret:
        form["client_secret"] = secret
    response = requests.post(token_url, data=form, timeout=10)
    return response.status_code == 200


# -- releasing worker processes together ---------------------------------------------
def release_together(
    target: Callable[..., None],
    args: tuple[Any, ...],
    procs: int,
    before_release: Callable[[], None],
    timeout: float = 120.0,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``target(*args, go, out)`` in ``procs`` spawned processes, released by one event.

    Each worker puts ``{"ready": True}`` on ``out`` once armed (or ``{"error": ...}`` if it
    could not start), then waits for ``go`` and puts ``{"results": [...]}``.
    ``before_release`` runs once every worker has answered (reset the server's counters
    there). Returns the result messages and the workers' start errors; bounded by
    ``timeout`` overall, stragglers are terminated.
    """
    go, out = SPAWN.Event(), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=target, args=(*args, go, out), daemon=True) for _ in range(procs)
    ]
    for proc in workers:
        proc.start()
    early: list[dict[str, Any]] = []
    answered = 0
    deadline = time.monotonic() + timeout
    while answered < procs:
        message = _next_message(out, workers, deadline)
        if message is None:
            break
        answered += 1  # "ready", or an error from a worker that will not report "ready"
        if not message.get("ready"):
            early.append(message)
    before_release()
    go.set()
    finished = [m for m in early if "results" in m]
    while len(finished) < procs:
        message = _next_message(out, workers, deadline)
        if message is None:
            break
        if "results" in message:
            finished.append(message)
    for proc in workers:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
    return finished, [m["error"] for m in early if "error" in m]


def _next_message(out: Any, workers: list[Any], deadline: float) -> dict[str, Any] | None:
    """The next message, or None once the deadline passed or every worker is gone."""
    while time.monotonic() < deadline:
        try:
            return dict(out.get(timeout=0.5))
        except queue.Empty:
            if not any(proc.is_alive() for proc in workers):
                return None
    return None


def summarize_outcomes(outcomes: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """Count what callers saw: ``{"status": int}`` or ``{"error": name}``, with
    ``start``/``end`` epoch seconds; ``expected`` outcomes, the missing ones as "no answer"."""
    ok = sum(1 for r in outcomes if r.get("status") == 200)
    kinds: dict[str, int] = {}
    for r in outcomes:
        if r.get("status") != 200:
            label = r.get("error") or f"HTTP {r.get('status')}"
            kinds[label] = kinds.get(label, 0) + 1
    if expected > len(outcomes):
        kinds["no answer"] = expected - len(outcomes)
    starts = [r["start"] for r in outcomes]
    ends = [r["end"] for r in outcomes]
    return {
        "ok": ok,
        "failures": expected - ok,
        "failure_kinds": kinds,
        "wall_ms": (max(ends) - min(starts)) * 1e3 if outcomes else None,
    }


# -- statistics and tables -----------------------------------------------------------
def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default r,
    first column l)."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def run_threads(target: Callable[[int], None], count: int, timeout: float) -> None:
    """Run ``target(i)`` in ``count`` threads and join them within ``timeout`` overall."""
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))


@contextlib.contextmanager
def temp_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tokenrotate-bench-") as directory:
        yield directory
