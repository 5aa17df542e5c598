"""Copies the console's third-party browser files from npm into roost/console/static/vendor/.

Run by `make console` (so by `make serve` and `make test`), by CI, and by the wheel build
(setup.py) when the files are missing. The versions are pinned in console/package.json and
console/package-lock.json and installed with `npm ci`; the copies are git-ignored, never
committed. Usage: python3 console/build_vendor.py [--force]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENDOR = ROOT / "roost" / "console" / "static" / "vendor"
# npm package -> files of its install copied as they are
FILES = {"uplot": ("dist/uPlot.iife.min.js", "dist/uPlot.min.css")}


class BuildError(Exception):
    """A one-line reason the vendor files could not be built."""


def targets() -> list[Path]:
    return [VENDOR / Path(name).name for files in FILES.values() for name in files]


def build(force: bool = False) -> list[Path]:
    """Installs the pinned packages (npm ci) and copies their files; nothing to do when every
    copy exists and ``force`` is false. Returns the files written."""
    if not force and all(path.is_file() for path in targets()):
        return []
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(
            "npm not found: install Node.js (with npm) to build the console's chart library"
        )
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BuildError(f"npm ci failed in {HERE}: {last[0]}")
    VENDOR.mkdir(parents=True, exist_ok=True)
    written = []
    for package, files in FILES.items():
        for name in files:
            source = HERE / "node_modules" / package / name
            target = VENDOR / source.name
            shutil.copyfile(source, target)
            written.append(target)
    return written


def main() -> int:
    try:
        written = build(force="--force" in sys.argv[1:])
    except BuildError as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"console: wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
