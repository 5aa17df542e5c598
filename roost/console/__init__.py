"""The Roost console: static files (``static/``) of a browser app that is a client of the public
REST API, served at ``/`` by :mod:`roost.api.console`. Its third-party files
(``static/vendor/``) come from npm at build time (``console/build_vendor.py``)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
