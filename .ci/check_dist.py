"""Check what the sdist and the wheel in DIST carry, against the git-tracked files.

The sdist carries README, LICENSE, CHANGES, the tests and the examples (downstream
packagers run the tests); the wheel carries the package with ``py.typed`` and the
licence, and no tests, bench or examples.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


def tracked(*paths: str) -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "--", *paths], capture_output=True, text=True, check=True
    ).stdout
    return {line for line in out.splitlines() if line}


def main(dist: Path) -> int:
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    with tarfile.open(sdist) as tar:
        in_sdist = {name.partition("/")[2] for name in tar.getnames()}
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())

    problems = []
    need = {"README.rst", "LICENSE", "CHANGES.rst", "setup.cfg", "pyproject.toml"}
    need |= tracked("tests", "examples", "docs", "requests_tokenrotate")
    problems += [f"sdist lacks {name}" for name in sorted(need - in_sdist)]

    package = tracked("requests_tokenrotate")
    problems += [f"wheel lacks {name}" for name in sorted(package - in_wheel)]
    if "requests_tokenrotate/py.typed" not in in_wheel:
        problems.append("wheel lacks requests_tokenrotate/py.typed")
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in in_wheel):
        problems.append("wheel lacks the LICENSE")
    for name in sorted(in_wheel):
        top = name.split("/")[0]
        if top not in ("requests_tokenrotate",) and not top.endswith(".dist-info"):
            problems.append(f"wheel carries {name}")

    for problem in problems:
        print("check_dist:", problem, file=sys.stderr)
    if not problems:
        print(
            f"check_dist: {sdist.name} ({len(in_sdist)} entries) and "
            f"{wheel.name} ({len(in_wheel)} entries) carry what they should"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
