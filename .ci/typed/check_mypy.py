"""Run ``mypy --strict`` on FILES and compare its errors with the files' markers.

A line ending in ``# expect-error: TEXT`` must get a mypy error containing TEXT;
every other line must get none. A package whose types mypy cannot see would give
"Cannot find implementation or library stub" (unexpected) or let the marked lines
through as ``Any`` (missing): either fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

MARKER = re.compile(r"#\s*expect-error:\s*(.+?)\s*$")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?:\d+:)? error: (?P<message>.*)$")


def main(files: list[str]) -> int:
    expected: dict[tuple[str, int], str] = {}
    for name in files:
        for number, text in enumerate(Path(name).read_text().splitlines(), 1):
            if match := MARKER.search(text):
                expected[(Path(name).name, number)] = match.group(1)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--show-column-numbers",
            "--no-error-summary",
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    got: dict[tuple[str, int], list[str]] = {}
    for line in done.stdout.splitlines():
        if match := ERROR.match(line):
            where = (Path(match["file"]).name, int(match["line"]))
            got.setdefault(where, []).append(match["message"])
    problems = []
    for where, text in sorted(expected.items()):
        if not any(text.lower() in message.lower() for message in got.get(where, [])):
            problems.append(f"{where[0]}:{where[1]}: mypy reported no error containing {text!r}")
    for where, messages in sorted(got.items()):
        if where not in expected:
            problems += [f"{where[0]}:{where[1]}: unexpected: {m}" for m in messages]
    if done.returncode not in (0, 1) or (not got and done.returncode):
        problems.append(f"mypy failed: {done.stdout}{done.stderr}")
    for problem in problems:
        print("check_mypy:", problem, file=sys.stderr)
    if not problems:
        print(f"check_mypy: {len(expected)} expected errors reported, no others")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
