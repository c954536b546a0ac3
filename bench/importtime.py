"""Experiment 6: import time.

Each sample is a fresh interpreter running
``t = time.perf_counter(); <import>; print(time.perf_counter() - t)``; the
imports are interleaved (A B C D A B C D ...) after one discarded warm-up round.
Reported: medians, and the difference to ``import requests``. For our import,
the child also reports which optional heavy modules got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench._common import median, percentile, table

IMPORTS = {
    "requests": "import requests",
    "requests-tokenrotate": "import requests_tokenrotate",
    "requests-oauthlib": "import requests_oauthlib",
    "Authlib": "from authlib.integrations.requests_client import OAuth2Session",
    "google-auth": "import google.oauth2.credentials, google.auth.transport.requests",
}
#: Modules the core imports only on the paths that need them.
WATCH = ("jwt", "portalocker", "platformdirs", "redis", "dataclasses", "inspect", "http.server")

_PROGRAM = """\
import time
_c, _t = time.process_time(), time.perf_counter()
{statement}
_t, _c = time.perf_counter() - _t, time.process_time() - _c
import json, sys
print(json.dumps([_t, _c, [m for m in {watch!r} if m in sys.modules]]))
"""


def _sample(statement: str) -> tuple[float, float, list[str]]:
    """(wall seconds, CPU seconds, watched modules loaded) for one fresh interpreter."""
    program = _PROGRAM.format(statement=statement, watch=WATCH)
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    wall, cpu, loaded = json.loads(output.strip().splitlines()[-1])
    return float(wall), float(cpu), list(loaded)


def _paired(values: list[float], base: list[float]) -> float:
    # Each run of the import and of `import requests` are neighbours in time.
    return median(v - b for v, b in zip(values, base, strict=True))


def run(quick: bool) -> dict[str, Any]:
    runs = 10 if quick else 21
    for statement in IMPORTS.values():  # warm-up: bytecode caches, page cache
        _sample(statement)
    wall: dict[str, list[float]] = {name: [] for name in IMPORTS}
    cpu: dict[str, list[float]] = {name: [] for name in IMPORTS}
    loaded: dict[str, list[str]] = {}
    for _ in range(runs):
        for name, statement in IMPORTS.items():
            seconds, cpu_seconds, modules = _sample(statement)
            wall[name].append(seconds * 1e3)
            cpu[name].append(cpu_seconds * 1e3)
            loaded[name] = modules
    return {
        "runs": runs,
        "python": sys.version.split()[0],
        "imports": {
            name: {
                "statement": IMPORTS[name],
                "median_ms": median(wall[name]),
                "p25_ms": percentile(wall[name], 0.25),
                "p75_ms": percentile(wall[name], 0.75),
                "cpu_median_ms": median(cpu[name]),
                "over_requests_ms": _paired(wall[name], wall["requests"]),
                "cpu_over_requests_ms": _paired(cpu[name], cpu["requests"]),
                "loaded": loaded[name],
                "samples_ms": [round(v, 2) for v in wall[name]],
                "cpu_samples_ms": [round(v, 2) for v in cpu[name]],
            }
            for name in IMPORTS
        },
    }


def report(result: dict[str, Any]) -> str:
    rows = [
        (
            f"`{r['statement']}`",
            f"{r['median_ms']:.1f}",
            f"{r['p25_ms']:.1f}-{r['p75_ms']:.1f}",
            f"{r['cpu_median_ms']:.1f}",
            "(reference)"
            if name == "requests"
            else f"{r['over_requests_ms']:+.1f} / {r['cpu_over_requests_ms']:+.1f}",
            ", ".join(r["loaded"]) or "-",
        )
        for name, r in result["imports"].items()
    ]
    return "\n".join(
        [
            f"### 6. Import time (fresh interpreter each, median of {result['runs']} interleaved "
            "runs)\n",
            table(
                [
                    "import",
                    "wall ms",
                    "p25-p75",
                    "CPU ms",
                    "over requests, wall / CPU ms (paired)",
                    "also loaded (of: " + ", ".join(WATCH) + ")",
                ],
                rows,
                "lrrrrl",
            ),
        ]
    )
