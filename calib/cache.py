"""Where intermediate results live, and how they are named: by a hash of their content.

``cache_dir()`` is the one root (env CALIB_CACHE, default ~/.cache/calib);
``digest(obj)`` is the one canonical hash of a JSON-able value. Nothing here
knows what is cached.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("CALIB_CACHE", Path.home() / ".cache" / "calib"))


def digest(obj) -> str:
    """sha256 hex of the canonical JSON of ``obj`` (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
