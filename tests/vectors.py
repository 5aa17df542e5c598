"""The captured wire vectors (``tests/data/vectors/``) and how to read them.

Each file holds the frames exchanged on loopback between an unmodified official client
(Linux-Client for the legacy protocol, IOTMP-Linux for IOTMP) and a scripted server: ``from``,
``hex`` and a decoded ``note``. They are captured bytes, kept in the repository as test data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parent / "data" / "vectors"


def load_frames(name: str) -> list[dict[str, Any]]:
    """The ``frames`` of a vector file: dicts with ``t``, ``from``, ``hex`` and ``note``."""
    frames: list[dict[str, Any]] = json.loads((VECTORS_DIR / name).read_text())["frames"]
    return frames


def captured(name: str) -> list[bytes]:
    """The bytes of every frame of a vector file, in order."""
    return [bytes.fromhex(f["hex"]) for f in load_frames(name)]
