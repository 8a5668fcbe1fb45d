"""Overrides of a profile's settings from outside the notebooks: a YAML file of settings and
``KEY=VALUE`` pairs (``python -m calib.book --settings FILE --set KEY=VALUE``).

The runner lays them over the profile once (``profiles.settings(profile, over)``) and hands the
mapping to every notebook as its papermill parameter ``settings``. A dotted key sets one field
of a mapping (``suite.limit=4``), and a mapping value is merged into the profile's
(``suite: {include_path: /tasks}`` keeps its shots).
Values are YAML: ``seeds=3``, ``sources=[c4, dclm]``, ``figure_methods=[]``.
"""
from __future__ import annotations

from pathlib import Path

from calib.errors import CalibError
from calib.experiments.grid import merge  # a grid's overrides and the runner's are laid over alike


def parse_set(item: str) -> dict:
    """'suite.limit=4' -> {'suite': {'limit': 4}} (the value read as YAML)."""
    import yaml
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise CalibError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seeds=3 or --set suite.limit=100")
    try:
        v = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise CalibError(f"--set {item!r}: the value is not valid YAML ({e})") from None
    for part in reversed(key.strip().split(".")):
        v = {part: v}
    return v


def read_file(path: str | Path) -> dict:
    import yaml
    p = Path(path).expanduser()
    if not p.is_file():
        raise CalibError(f"--settings: no file at {p}")
    try:
        m = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise CalibError(f"--settings {p}: not valid YAML ({e})") from None
    if not isinstance(m, dict):
        raise CalibError(f"--settings {p}: expected a mapping of settings, got {type(m).__name__}")
    return m


def collect(files=(), sets=()) -> dict:
    """The overrides of settings files (in order), then of --set pairs."""
    out: dict = {}
    for f in files or ():
        out = merge(out, read_file(f))
    for item in sets or ():
        out = merge(out, parse_set(item))
    return out
