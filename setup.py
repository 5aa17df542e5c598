"""The wheel carries the console's third-party browser files: building it runs
console/build_vendor.py first (npm ci + copy into roost/console/static/vendor/) when they are
missing, and stops with one line if npm is not installed. Everything else is in pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent / "console"))
import build_vendor


class BuildWithConsole(build_py):
    def run(self) -> None:
        try:
            build_vendor.build()
        except build_vendor.BuildError as exc:
            raise SystemExit(f"console: {exc}") from None
        super().run()


setup(cmdclass={"build_py": BuildWithConsole})
