"""One exception type for user-facing errors, and the checks that raise it; the CLI prints
these without a traceback.

Every layer raises CalibError for bad input, so the CLI, grids and Python callers
all get the same one-line message; nothing here imports the rest of calib.
"""
from __future__ import annotations

import argparse
import contextlib


class CalibError(ValueError):
    """Bad input or an unusable artefact. The message names the bad value and the valid choices."""


def check_choice(kind: str, value, choices) -> None:
    """Raise CalibError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise CalibError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, choices))}")


@contextlib.contextmanager
def at(where: str):
    """Prefix a CalibError with the field it concerns."""
    try:
        yield
    except CalibError as e:
        raise CalibError(f"{where}: {e}") from None


def section(where: str, value, defaults: dict) -> dict:
    """A mapping field with its defaults filled in; an unknown key is an error that lists the valid ones."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise CalibError(f"{where}: expected a mapping with fields {', '.join(defaults)}; got {value!r}")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise CalibError(f"{where}.{unknown[0]}: unknown field; valid fields: {', '.join(defaults)}")
    return {**defaults, **value}


def integer(where: str, v, lo: int = 0, hi: int | None = None, none: bool = False):
    """``v`` if it is an integer in [lo, hi] (or None where ``none``), else a CalibError naming
    ``where`` (a field, or a command-line flag: '--limit', to which null means nothing)."""
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
        null = " or null" if none and not where.startswith("--") else ""
        raise CalibError(f"{where}: expected {rng}{null}; got {v!r}")
    return v


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown once, by argparse: appended as ``(default: X)`` unless it is None or
    a flag's False (their help says what unset means) or the help already places it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
