"""Run the benchmarks: ``python -m bench [--quick] [--only NAME ...] [--skip NAME ...]``.

Prints one Markdown section per experiment, then the raw results as JSON, and
writes the JSON to ``bench/results.json`` (``--json PATH`` to change it).
Experiments: overhead (1), storm (2), storm_httpx (2b, the storm on httpx clients),
stream401 (3), shortlived (4), soak (5), importtime (6), handoff (the FileTokenStore
lock handoff, bench/handoff.py), httpx_twin (the httpx twin's CPU and loop lag),
fleet (file, Redis and PostgreSQL side by side, bench/fleet.py: needs redis-server,
PostgreSQL and the redis and postgres extras).
Every server is a loopback LocalIdP; every loop is bounded.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _peers, importtime, overhead, shortlived, soak, storm, storm_httpx, stream401
from bench._common import SPAWN, has_transport, loopback_only, table

HERE = Path(__file__).resolve().parent


def _handoff_run(quick: bool) -> dict[str, Any]:
    from bench import handoff
    from requests_tokenrotate import _stores

    rounds, waiters = (2, 8) if quick else (5, 8)
    intervals = {
        "requests-tokenrotate (5 ms poll)": _stores.LOCK_CHECK_INTERVAL,
        "portalocker default (250 ms poll)": 0.25,
    }
    samples: dict[str, list[float]] = {name: [] for name in intervals}
    for _ in range(rounds):  # interleaved, as bench/handoff.py does
        for name, interval in intervals.items():
            samples[name] += handoff.one_round(SPAWN, interval, waiters)
    return {
        "rounds": rounds,
        "waiters": waiters,
        "ms": {name: sorted(round(v, 2) for v in values) for name, values in samples.items()},
    }


def _handoff_report(result: dict[str, Any]) -> str:
    from bench._common import median, percentile

    rows = [
        (name, f"{median(v):.1f}", f"{percentile(v, 0.99):.1f}", f"{max(v):.1f}")
        for name, v in result["ms"].items()
    ]
    return "\n".join(
        [
            f"### Lock handoff ({result['waiters']} waiting processes x {result['rounds']} rounds, "
            "ms from the holder's release to each waiter's return)\n",
            table(["poll interval", "p50 ms", "p99 ms", "max ms"], rows),
        ]
    )


def _lazy(name: str) -> tuple[Callable[[bool], dict[str, Any]], Callable[[dict[str, Any]], str]]:
    """``bench.<name>``'s run and report, imported when used (it needs the httpx extra)."""

    def run(quick: bool) -> dict[str, Any]:
        return importlib.import_module(f"bench.{name}").run(quick)

    def report(result: dict[str, Any]) -> str:
        return importlib.import_module(f"bench.{name}").report(result)

    return run, report


#: name -> (run(quick), report(result))
EXPERIMENTS: dict[str, tuple[Callable[[bool], dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "overhead": (overhead.run, overhead.report),
    "storm": (storm.run, storm.report),
    "storm_httpx": (storm_httpx.run, storm_httpx.report),
    "stream401": (stream401.run, stream401.report),
    "shortlived": (shortlived.run, shortlived.report),
    "soak": (soak.run, soak.report),
    "importtime": (importtime.run, importtime.report),
    "handoff": (_handoff_run, _handoff_report),
    "httpx_twin": _lazy("httpx_twin"),
    "fleet": _lazy("fleet"),
}


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": _peers.versions(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter soak")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(EXPERIMENTS),
        metavar="NAME",
        help=f"run only these: {', '.join(EXPERIMENTS)}",
    )
    parser.add_argument(
        "--skip",
        nargs="+",
        choices=list(EXPERIMENTS),
        metavar="NAME",
        default=[],
        help="run all but these",
    )
    parser.add_argument(
        "--soak-seconds",
        type=float,
        help="our soak duration (default 60, "
        "15 with --quick; the peers run at most 10 s, 5 with --quick)",
    )
    parser.add_argument(
        "--json",
        default=str(HERE / "results.json"),
        help="where to write the raw results (default bench/results.json; '-' for none)",
    )
    args = parser.parse_args(argv)
    loopback_only()
    names = [n for n in (args.only or EXPERIMENTS) if n not in args.skip]
    machine = _machine()
    results: dict[str, Any] = {"machine": machine, "quick": args.quick, "experiments": {}}
    transport = has_transport()
    print(f"# requests-tokenrotate benchmarks{' (--quick)' if args.quick else ''}\n")
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}, "
        f"Python {machine['python']}.  "
    )
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".\n")
    if not transport:
        print(
            "**The transport (TokenRotateAdapter, TokenRotateAuth, mount) is not exported "
            "by requests_tokenrotate yet: our rows are pending.**\n"
        )
    total = time.monotonic()
    for name in names:
        run, report = EXPERIMENTS[name]
        started = time.monotonic()
        if name == "soak" and args.soak_seconds:
            result = soak.run(args.quick, args.soak_seconds)
        else:
            result = run(args.quick)
        result["duration_s"] = round(time.monotonic() - started, 1)
        results["experiments"][name] = result
        print(report(result))
        print(f"\n_{name}: {result['duration_s']} s_\n", flush=True)
    results["duration_s"] = round(time.monotonic() - total, 1)
    print(f"Total: {results['duration_s']} s\n")
    text = json.dumps(results, indent=1, sort_keys=False)
    print("<details><summary>raw JSON</summary>\n\n```json")
    print(text)
    print("```\n</details>")
    if args.json != "-":
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    mp.freeze_support()
    sys.exit(main())
