"""The package's layers: no import cycles, and decision modules that import no HTTP client."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "requests_tokenrotate"

#: Modules that decide without I/O: they import neither requests nor httpx.
PURE = ("_answers", "_codec", "_freshness", "_oauth", "_policy", "_protocol", "_retry")


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports when it is imported (not under TYPE_CHECKING)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pending = [node for node in tree.body if not _is_type_checking(node)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.If | ast.Try):  # conditional imports still run
            children = [*node.body, *node.orelse]
            children += [s for h in getattr(node, "handlers", []) for s in h.body]
            children += getattr(node, "finalbody", [])
            pending.extend(child for child in children if not _is_type_checking(child))
    return names


def _graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in PACKAGE.glob("*.py")}
    return {name: _imports(path) & modules.keys() - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for child in sorted(graph[name]):
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if child not in state and (found := visit(child)):
                return found
        state[name] = 2
        path.pop()
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_the_run_time_import_graph_has_no_cycles():
    """No package module imports (at import time) one that imports it back."""
    graph = _graph()
    assert graph["_source"], "the graph parser found no imports"
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a planted cycle is reported."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, sys, types

    HTTP = ("requests", "httpx", "urllib3")
    pure = set(sys.argv[2:])

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in HTTP:
                return None
            frame = sys._getframe(1)
            while frame is not None and (
                frame.f_code.co_filename.startswith("<frozen")
                or "importlib" in frame.f_code.co_filename
            ):
                frame = frame.f_back
            importer = frame.f_globals.get("__name__", "") if frame is not None else ""
            if importer.startswith("requests_tokenrotate.") and importer.rsplit(".", 1)[1] in pure:
                raise ImportError(f"{importer} imports {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    # The package's __init__ imports the shells: load only the module under test.
    package = types.ModuleType("requests_tokenrotate")
    package.__path__ = [sys.argv[1]]
    sys.modules["requests_tokenrotate"] = package
    for name in pure:
        __import__("requests_tokenrotate." + name)
    loaded = sorted(m for m in sys.modules if m.startswith("requests_tokenrotate."))
    print(" ".join(loaded))
    print("httpx" in sys.modules)
    """
)


def _load(*modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER, str(PACKAGE), *modules],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_decision_modules_import_no_http_client():
    """The pure modules, and every package module they load, import neither requests nor httpx.

    The one exception is ``exceptions``: our errors are ``requests.RequestException``
    subclasses by contract, so it imports ``requests.exceptions``.
    """
    loaded = [name for name in PURE if (PACKAGE / f"{name}.py").exists()]
    assert len(loaded) == len(PURE), "a pure module is missing"
    result = _load(*loaded)
    assert result.returncode == 0, result.stderr
    modules, httpx_loaded = result.stdout.split("\n")[:2]
    impure = {m.rsplit(".", 1)[1] for m in modules.split()} - {"exceptions"}
    # Every module a pure module pulls in passes the same check.
    result = _load(*sorted(impure))
    assert result.returncode == 0, result.stderr
    assert httpx_loaded == "False"


@pytest.mark.parametrize("module", ["_exchange", "_body"])
def test_the_check_refuses_a_module_that_imports_requests(module):
    """The import check can fail: a module that imports requests is refused."""
    result = _load(module)
    assert result.returncode != 0
    assert f"requests_tokenrotate.{module} imports" in result.stderr


def test_the_policy_watches_requests_redirect_statuses():
    """The policy's redirect statuses, spelled without requests, are requests' own."""
    from requests.models import REDIRECT_STATI

    from requests_tokenrotate._policy import REDIRECTS

    assert frozenset(REDIRECT_STATI) == REDIRECTS
