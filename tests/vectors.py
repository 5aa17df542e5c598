"""Where the captured vectors live (``../shared/vectors`` or ``$ROOST_VECTORS_DIR``) and how to
read them; a test that needs them is skipped with the reason when they are absent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def vectors_dir() -> Path:
    configured = os.environ.get("ROOST_VECTORS_DIR")
    path = (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared/vectors"
    )
    if not path.is_dir():
        pytest.skip(f"captured vectors not found at {path} (set ROOST_VECTORS_DIR)")
    return path


def load_frames(name: str) -> list[dict[str, Any]]:
    """The ``frames`` of a vector file: dicts with ``t``, ``from``, ``hex`` and ``note``."""
    frames: list[dict[str, Any]] = json.loads((vectors_dir() / name).read_text())["frames"]
    return frames


def captured(name: str) -> list[bytes]:
    """The bytes of every frame of a vector file, in order."""
    return [bytes.fromhex(f["hex"]) for f in load_frames(name)]
